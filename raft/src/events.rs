//! The usage history: an append-only list of [`Event`]s derived from applied log entries.
//!
//! Every replica derives the same events from the same entries, because they come from
//! [`LicenseState::apply_with_events`], which is as deterministic as `apply` itself, and
//! from membership entries the storage layer applies. The history is therefore identical on
//! every node; it is part of the state machine's snapshot, so that a node that catches up by
//! installing a snapshot gets the same history as one that applied every entry.
//!
//! What is recorded, one event each:
//! - an allocation granted (new or re-allocated), and one refused, with its code;
//! - cores freed: by a release, by a lease that ended, by a license removed, or because a
//!   replacing license issue no longer allows an allocation;
//! - a license installed, replaced or removed (an install of the very same license, which
//!   changes nothing, records nothing);
//! - a change of the Raft membership.
//!
//! What is not: retries that the exactly-once table answers (they change nothing), lease
//! checkpoints, and refused commands other than allocations.
//!
//! **Time.** An event carries the calendar stamp of its entry (`None` when the voters' clocks
//! did not agree) and the cluster clock after the entry, which is the latest stamp applied
//! so far and never goes back. The clock is what places an event in time: an entry without
//! a stamp is placed at the last stamp before it.
//!
//! **Retention.** The history is bounded by a [`Retention`] that is part of the replicated
//! state: events whose clock is `max_age_days` or more behind the newest event's clock are
//! dropped, and the oldest go when more than `max_events` are held. Both rules are judged
//! at apply time against the entries' own clocks, never a node's clock, so every replica
//! drops the same events. The retention changes only through a log entry
//! ([`crate::Command::SetEventRetention`]), which the leader proposes from its configuration.
//!
//! **Where it starts.** A history records nothing until the first `SetEventRetention` entry
//! is applied: that entry starts it, at the same log index on every replica. Any other start
//! would differ between replicas that began from different points: a database upgraded from
//! a format without history re-applies the log after its own snapshot, and a new member may
//! apply the log from its first entry, but all of them apply that one entry. The leader
//! proposes it before the first write it proposes while the history has not started, so a
//! new cluster records from its first license on; an upgraded cluster records from the
//! first write after its upgrade.

use std::collections::BTreeMap;

use imbl::Vector;

use serde::{Deserialize, Serialize};

use crate::command::{Allocation, Code, Outcome, Response};
use crate::license::License;
use crate::types::{LicenseId, MacAddr, NodeName, Timestamp};

/// One day in milliseconds.
pub const DAY_MS: u64 = 24 * 60 * 60 * 1_000;

/// The number of days events are kept by default: a year and a month, so that last year's
/// same quarter can still be reported.
pub const DEFAULT_MAX_AGE_DAYS: u32 = 400;
/// The most events kept by default.
pub const DEFAULT_MAX_EVENTS: u64 = 1_000_000;

/// One thing that happened to the licenses, as the log decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The event's number: 1 for the first event the cluster recorded, increasing by one,
    /// never reused (also after older events are dropped). Pages are asked by it.
    pub seq: u64,
    /// The Raft log index of the entry that caused it; one entry may cause several events.
    pub index: u64,
    /// The entry's calendar stamp, `None` when the voters' clocks did not agree.
    pub time: Option<Timestamp>,
    /// The cluster clock after the entry: its stamp, or the last stamp before it. This is
    /// the time the event is placed at.
    pub clock: Timestamp,
    /// What happened.
    pub kind: EventKind,
}

/// Why cores were freed, in a [`EventKind::Freed`] event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FreedBy {
    /// The holder or an administrator released them.
    Released,
    /// The lease ended without a heartbeat.
    Expired,
    /// Their license was removed.
    LicenseRemoved,
    /// A replacing license issue no longer allows them (`code` says why).
    LicenseReplaced,
}

/// What an [`Event`] records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A server was allocated cores (a re-allocation replaces its earlier allocation).
    Allocated {
        /// The server.
        node: NodeName,
        /// The license.
        license: LicenseId,
        /// The server's MAC address.
        mac: MacAddr,
        /// The server's cores.
        cores: u32,
        /// The cores counted against the license (at least its per-server minimum).
        counted_cores: u32,
        /// True when it replaced an allocation the server held.
        replaced: bool,
    },
    /// An allocation was refused.
    Refused {
        /// The server.
        node: NodeName,
        /// The license asked for, or the only one installed when the request named none.
        license: Option<LicenseId>,
        /// The cores asked for.
        cores: u32,
        /// Why.
        code: Code,
    },
    /// A server's cores were freed.
    Freed {
        /// The server.
        node: NodeName,
        /// The license they were counted against.
        license: LicenseId,
        /// The cores counted against it.
        counted_cores: u32,
        /// Why.
        by: FreedBy,
        /// For [`FreedBy::LicenseReplaced`], the rule the new issue breaks.
        code: Option<Code>,
    },
    /// A license was installed where none had its id.
    LicenseInstalled {
        /// The license.
        license: LicenseId,
        /// Its cores.
        max_cores: u32,
    },
    /// A newer issue of a license replaced the installed one.
    LicenseReplaced {
        /// The license.
        license: LicenseId,
        /// The new issue's cores.
        max_cores: u32,
    },
    /// A license was removed.
    LicenseRemoved {
        /// The license.
        license: LicenseId,
    },
    /// The cluster's membership changed.
    MembershipChanged {
        /// The voters after the change (of the joint configuration's last part).
        voters: Vec<u64>,
        /// The learners after the change.
        learners: Vec<u64>,
    },
    /// The history's retention changed.
    RetentionChanged {
        /// The new retention.
        retention: Retention,
    },
}

/// How much history is kept. Part of the replicated state, so every replica keeps the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Events this many days (or more) older than the newest event are dropped. At least 1.
    pub max_age_days: u32,
    /// The most events kept; the oldest go first. At least 1.
    pub max_events: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age_days: DEFAULT_MAX_AGE_DAYS,
            max_events: DEFAULT_MAX_EVENTS,
        }
    }
}

impl Retention {
    /// Whether both bounds are at least 1.
    pub fn is_valid(&self) -> bool {
        self.max_age_days >= 1 && self.max_events >= 1
    }
}

/// The history itself: the retained events, oldest first, and the retention.
///
/// The events are an [`imbl::Vector`] so that cloning the state for a snapshot costs
/// O(1) whatever the length of the history; its serde form is a sequence, as a `VecDeque`'s.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLog {
    /// `None` until the first [`EventKind::RetentionChanged`] starts the history.
    retention: Option<Retention>,
    events: Vector<Event>,
    /// The number the next event gets, minus one: the number of events ever recorded.
    recorded: u64,
}

/// One page of the history, as [`EventLog::after`] gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// The events, oldest first.
    pub events: Vec<Event>,
    /// The `since` of the next page: the last event's number, or the `since` asked when the
    /// page is empty. Asking again with it gives the events recorded since.
    pub next: u64,
}

impl EventLog {
    /// An empty history, started, with this retention.
    pub fn with_retention(retention: Retention) -> Self {
        EventLog {
            retention: Some(retention),
            ..EventLog::default()
        }
    }

    /// The retention in force, or `None` while the history has not started.
    pub fn retention(&self) -> Option<Retention> {
        self.retention
    }

    /// How many events are held.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// How many events were ever recorded: the number of the latest one.
    pub fn recorded(&self) -> u64 {
        self.recorded
    }

    /// The retained events, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    /// Records what the entry at `index` caused, then applies the retention. A
    /// [`EventKind::RetentionChanged`] event sets the retention it names (and starts the
    /// history); before one, other events are not recorded.
    pub fn record(
        &mut self,
        index: u64,
        time: Option<Timestamp>,
        clock: Timestamp,
        kinds: Vec<EventKind>,
    ) {
        if kinds.is_empty() {
            return;
        }
        for kind in kinds {
            if let EventKind::RetentionChanged { retention } = &kind {
                self.retention = Some(*retention);
            }
            if self.retention.is_none() {
                continue;
            }
            self.recorded += 1;
            self.events.push_back(Event {
                seq: self.recorded,
                index,
                time,
                clock,
                kind,
            });
        }
        self.prune(clock);
    }

    /// Drops the events the retention no longer keeps, judged against `newest`, the clock of
    /// the latest entry.
    fn prune(&mut self, newest: Timestamp) {
        let Some(retention) = self.retention else {
            return;
        };
        let max_age = u64::from(retention.max_age_days).saturating_mul(DAY_MS);
        while let Some(front) = self.events.front() {
            let too_many = self.events.len() as u64 > retention.max_events;
            let too_old = front.clock.plus_millis(max_age) <= newest;
            if !(too_many || too_old) {
                break;
            }
            self.events.pop_front();
        }
    }

    /// At most `limit` events recorded after event number `since`, oldest first. Events
    /// dropped by the retention are gone: the first one given may be later than `since + 1`.
    pub fn after(&self, since: u64, limit: usize) -> Page {
        let start = match self.events.binary_search_by(|e| {
            if e.seq <= since {
                std::cmp::Ordering::Less
            } else {
                std::cmp::Ordering::Greater
            }
        }) {
            Ok(at) | Err(at) => at,
        };
        let events: Vec<Event> = self
            .events
            .skip(start)
            .iter()
            .take(limit)
            .cloned()
            .collect();
        let next = events.last().map_or(since, |e| e.seq);
        Page { events, next }
    }
}

/// The events of an install: the license installed or replaced, and each allocation the new
/// issue dropped (`held`: the counted cores of the license's servers before it). An install
/// that changed nothing, or was refused, has none.
pub(crate) fn install_events(
    license: &License,
    response: &Response,
    held: &BTreeMap<NodeName, u32>,
) -> Vec<EventKind> {
    let Ok(Outcome::LicenseInstalled {
        license: id,
        replaced,
        unchanged: false,
        dropped,
    }) = response
    else {
        return Vec::new();
    };
    let max_cores = license.max_cores;
    let mut events = vec![if *replaced {
        EventKind::LicenseReplaced {
            license: id.clone(),
            max_cores,
        }
    } else {
        EventKind::LicenseInstalled {
            license: id.clone(),
            max_cores,
        }
    }];
    events.extend(dropped.iter().map(|d| EventKind::Freed {
        node: d.node.clone(),
        license: id.clone(),
        counted_cores: held.get(&d.node).copied().unwrap_or_default(),
        by: FreedBy::LicenseReplaced,
        code: Some(d.code),
    }));
    events
}

/// The events of a removal: the cores each server held under it freed (`held`, as before
/// the removal), then the license removed. A refused removal has none.
pub(crate) fn removal_events(
    license: &LicenseId,
    response: &Response,
    held: &BTreeMap<NodeName, u32>,
) -> Vec<EventKind> {
    let Ok(Outcome::LicenseRemoved { released, .. }) = response else {
        return Vec::new();
    };
    let mut events: Vec<EventKind> = released
        .iter()
        .map(|node| EventKind::Freed {
            node: node.clone(),
            license: license.clone(),
            counted_cores: held.get(node).copied().unwrap_or_default(),
            by: FreedBy::LicenseRemoved,
            code: None,
        })
        .collect();
    events.push(EventKind::LicenseRemoved {
        license: license.clone(),
    });
    events
}

/// The event of cores freed from `node`, if it held any.
pub(crate) fn freed_event(
    node: &NodeName,
    freed: Option<&Allocation>,
    by: FreedBy,
) -> Option<EventKind> {
    freed.map(|a| EventKind::Freed {
        node: node.clone(),
        license: a.license.clone(),
        counted_cores: a.counted_cores,
        by,
        code: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn removed(n: u32) -> EventKind {
        EventKind::LicenseRemoved {
            license: LicenseId::new(format!("lic-{n}")).unwrap(),
        }
    }

    fn seqs(log: &EventLog) -> Vec<u64> {
        log.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn nothing_is_recorded_before_the_first_retention_event() {
        let mut log = EventLog::default();
        assert_eq!(log.retention(), None);
        log.record(1, None, Timestamp(0), vec![removed(1)]);
        assert!(log.is_empty());
        assert_eq!(log.recorded(), 0);
        let retention = Retention::default();
        log.record(
            2,
            None,
            Timestamp(0),
            vec![EventKind::RetentionChanged { retention }],
        );
        log.record(3, None, Timestamp(0), vec![removed(3)]);
        assert_eq!(log.retention(), Some(retention));
        assert_eq!(seqs(&log), vec![1, 2]);
        let indexes: Vec<u64> = log.iter().map(|e| e.index).collect();
        assert_eq!(indexes, vec![2, 3]);
    }

    #[test]
    fn events_are_numbered_in_order_and_an_entry_may_cause_several() {
        let mut log = EventLog::with_retention(Retention::default());
        log.record(3, Some(Timestamp(100)), Timestamp(100), vec![removed(1)]);
        log.record(4, None, Timestamp(100), vec![]);
        log.record(5, None, Timestamp(100), vec![removed(2), removed(3)]);
        assert_eq!(seqs(&log), vec![1, 2, 3]);
        let indexes: Vec<u64> = log.iter().map(|e| e.index).collect();
        assert_eq!(indexes, vec![3, 5, 5]);
        assert_eq!(log.iter().nth(1).unwrap().time, None);
        assert_eq!(log.recorded(), 3);
    }

    #[test]
    fn pages_follow_the_numbers_and_next_continues_them() {
        let mut log = EventLog::with_retention(Retention::default());
        for i in 1..=5 {
            log.record(i, Some(Timestamp(i)), Timestamp(i), vec![removed(i as u32)]);
        }
        let first = log.after(0, 2);
        assert_eq!(
            first.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(first.next, 2);
        let second = log.after(first.next, 2);
        assert_eq!(
            second.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![3, 4]
        );
        let third = log.after(second.next, 2);
        assert_eq!(third.events.len(), 1);
        assert_eq!(third.next, 5);
        let empty = log.after(third.next, 2);
        assert!(empty.events.is_empty());
        assert_eq!(empty.next, 5, "an empty page keeps the since asked");
        assert_eq!(log.after(99, 2).next, 99);
    }

    #[test]
    fn the_count_bound_drops_the_oldest_and_numbers_are_not_reused() {
        let mut log = EventLog::with_retention(Retention {
            max_age_days: 400,
            max_events: 3,
        });
        for i in 1..=5 {
            log.record(i, None, Timestamp(0), vec![removed(i as u32)]);
        }
        assert_eq!(seqs(&log), vec![3, 4, 5]);
        let page = log.after(0, 10);
        assert_eq!(
            page.events.first().unwrap().seq,
            3,
            "dropped events are gone"
        );
    }

    #[test]
    fn the_age_bound_is_judged_against_the_newest_clock() {
        let mut log = EventLog::with_retention(Retention {
            max_age_days: 2,
            max_events: 100,
        });
        log.record(1, Some(Timestamp(0)), Timestamp(0), vec![removed(1)]);
        log.record(
            2,
            Some(Timestamp(DAY_MS)),
            Timestamp(DAY_MS),
            vec![removed(2)],
        );
        // Just under two days after the first: both kept.
        let t = 2 * DAY_MS - 1;
        log.record(3, Some(Timestamp(t)), Timestamp(t), vec![removed(3)]);
        assert_eq!(seqs(&log), vec![1, 2, 3]);
        // Two days after the first: it goes, the second stays.
        let t = 2 * DAY_MS;
        log.record(4, None, Timestamp(t), vec![removed(4)]);
        assert_eq!(seqs(&log), vec![2, 3, 4]);
        // An entry without events prunes nothing: no event, no judgement.
        log.record(
            5,
            Some(Timestamp(100 * DAY_MS)),
            Timestamp(100 * DAY_MS),
            vec![],
        );
        assert_eq!(seqs(&log), vec![2, 3, 4]);
        // The next event judges by its clock: everything else is too old.
        let t = 100 * DAY_MS;
        log.record(6, None, Timestamp(t), vec![removed(6)]);
        assert_eq!(seqs(&log), vec![5]);
    }

    #[test]
    fn a_retention_event_sets_the_retention_and_prunes_at_once() {
        let mut log = EventLog::with_retention(Retention::default());
        for i in 1..=4 {
            log.record(i, None, Timestamp(0), vec![removed(i as u32)]);
        }
        let retention = Retention {
            max_age_days: 30,
            max_events: 2,
        };
        log.record(
            5,
            None,
            Timestamp(0),
            vec![EventKind::RetentionChanged { retention }],
        );
        assert_eq!(log.retention(), Some(retention));
        assert_eq!(seqs(&log), vec![4, 5]);
    }

    /// docs/operations.md sizes the history by this.
    #[test]
    fn an_allocation_event_encodes_in_under_100_bytes() {
        let mut log = EventLog::with_retention(Retention::default());
        let allocated = |i: u32| EventKind::Allocated {
            node: NodeName::new(format!("app-server-{i:04}.example.com")).unwrap(),
            license: LicenseId::new("acme-2026-enterprise").unwrap(),
            mac: MacAddr::from_bytes([2, 0, 0, 0, 0, 1]),
            cores: 64,
            counted_cores: 64,
            replaced: false,
        };
        let empty = crate::codec::encode(&log).unwrap().len();
        for i in 0..1_000 {
            let t = Timestamp(1_795_835_510_000 + u64::from(i));
            log.record(1_000_000 + u64::from(i), Some(t), t, vec![allocated(i)]);
        }
        let per_event = (crate::codec::encode(&log).unwrap().len() - empty) / 1_000;
        assert!(per_event < 100, "{per_event} bytes per event");
        assert!(per_event > 40, "{per_event} bytes: the names are in it");
    }

    #[test]
    fn the_history_survives_the_codec_and_json() {
        let mut log = EventLog::with_retention(Retention::default());
        log.record(
            7,
            None,
            Timestamp(5),
            vec![EventKind::Refused {
                node: NodeName::new("app-1").unwrap(),
                license: None,
                cores: 8,
                code: Code::CpuLimitExhausted,
            }],
        );
        let bytes = crate::codec::encode(&log).unwrap();
        let back: EventLog = crate::codec::decode(&bytes).unwrap();
        assert_eq!(back, log);
        let page = log.after(0, 10);
        let json = serde_json::to_value(&page).unwrap();
        assert_eq!(
            json["events"][0]["kind"]["refused"]["code"],
            "CPU_LIMIT_EXHAUSTED"
        );
        let back: Page = serde_json::from_value(json).unwrap();
        assert_eq!(back, page);
    }
}
