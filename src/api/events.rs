//! The bodies of `GET /v1/events`: the cluster's usage history, one page at a time.
//!
//! An event is flat JSON with a `kind` field naming what happened and the fields of that
//! kind beside it, so that a script can filter with one key. The shapes mirror
//! [`licd_raft::events`] without being them: the stored history can change shape without
//! changing the API.

use licd_raft::events::{Event, EventKind, FreedBy, Page};
use licd_raft::types::{LicenseId, MacAddr, NodeName, Timestamp};
use serde::{Deserialize, Serialize};

use super::ErrorCode;

/// The default number of events of a page.
pub const DEFAULT_EVENTS_LIMIT: usize = 1_000;
/// The most events a page may ask for.
pub const MAX_EVENTS_LIMIT: usize = 10_000;
const _: () = assert!(
    MAX_EVENTS_LIMIT == 10_000,
    "the contract's maximum of `limit`"
);

/// `GET /v1/events` query string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Events after this event number; 0 (the default) from the oldest kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// At most this many events, 1 to [`MAX_EVENTS_LIMIT`]; [`DEFAULT_EVENTS_LIMIT`] by
    /// default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 10_000)]
    pub limit: Option<usize>,
}

/// One page of the usage history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventsBody {
    /// The events, oldest first.
    pub events: Vec<EventBody>,
    /// The `since` of the next page: the last event's number, or the `since` asked when no
    /// event followed it.
    pub next: u64,
}

/// One event of the usage history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventBody {
    /// The event's number, increasing by one from 1; never reused.
    pub seq: u64,
    /// The Raft log index of the entry that caused it.
    pub index: u64,
    /// The entry's calendar stamp (ms since the Unix epoch), null when the voters' clocks
    /// did not agree.
    pub time: Option<Timestamp>,
    /// The cluster clock after the entry: its stamp or the last one before it. Reports
    /// place the event at this time.
    pub clock: Timestamp,
    /// What happened.
    #[serde(flatten)]
    pub what: EventWhat,
}

/// What an event records, named by its `kind` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventWhat {
    /// A server was allocated cores; a re-allocation replaces its earlier allocation.
    Allocated {
        /// The server.
        node: NodeName,
        /// The license.
        license: LicenseId,
        /// The server's MAC address.
        mac: MacAddr,
        /// The server's cores.
        cores: u32,
        /// The cores counted against the license.
        counted_cores: u32,
        /// Whether it replaced an allocation the server held.
        replaced: bool,
    },
    /// An allocation was refused.
    Refused {
        /// The server.
        node: NodeName,
        /// The license asked for (or the only one installed), if any.
        license: Option<LicenseId>,
        /// The cores asked for.
        cores: u32,
        /// Why, such as `CPU_LIMIT_EXHAUSTED`.
        code: ErrorCode,
    },
    /// A server's cores were freed.
    Freed {
        /// The server.
        node: NodeName,
        /// The license they were counted against.
        license: LicenseId,
        /// The cores counted against it.
        counted_cores: u32,
        /// `released`, `expired`, `license_removed` or `license_replaced`.
        reason: FreedReason,
        /// For `license_replaced`, the rule the new issue breaks.
        code: Option<ErrorCode>,
    },
    /// A license was installed.
    LicenseInstalled {
        /// The license.
        license: LicenseId,
        /// Its cores.
        max_cores: u32,
    },
    /// A newer issue replaced a license.
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
        /// The voters after the change.
        voters: Vec<u64>,
        /// The learners after the change.
        learners: Vec<u64>,
    },
    /// The history's retention was set.
    RetentionChanged {
        /// Days kept.
        retention_days: u32,
        /// The most events kept.
        max_events: u64,
    },
}

/// Why cores were freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FreedReason {
    /// Released by the holder or an administrator.
    Released,
    /// The lease ended without a heartbeat.
    Expired,
    /// The license was removed.
    LicenseRemoved,
    /// A replacing license issue no longer allows the allocation.
    LicenseReplaced,
}

impl From<FreedBy> for FreedReason {
    fn from(by: FreedBy) -> Self {
        match by {
            FreedBy::Released => FreedReason::Released,
            FreedBy::Expired => FreedReason::Expired,
            FreedBy::LicenseRemoved => FreedReason::LicenseRemoved,
            FreedBy::LicenseReplaced => FreedReason::LicenseReplaced,
        }
    }
}

impl From<&EventKind> for EventWhat {
    fn from(kind: &EventKind) -> Self {
        match kind.clone() {
            EventKind::Allocated {
                node,
                license,
                mac,
                cores,
                counted_cores,
                replaced,
            } => EventWhat::Allocated {
                node,
                license,
                mac,
                cores,
                counted_cores,
                replaced,
            },
            EventKind::Refused {
                node,
                license,
                cores,
                code,
            } => EventWhat::Refused {
                node,
                license,
                cores,
                code: code.into(),
            },
            EventKind::Freed {
                node,
                license,
                counted_cores,
                by,
                code,
            } => EventWhat::Freed {
                node,
                license,
                counted_cores,
                reason: by.into(),
                code: code.map(Into::into),
            },
            EventKind::LicenseInstalled { license, max_cores } => {
                EventWhat::LicenseInstalled { license, max_cores }
            }
            EventKind::LicenseReplaced { license, max_cores } => {
                EventWhat::LicenseReplaced { license, max_cores }
            }
            EventKind::LicenseRemoved { license } => EventWhat::LicenseRemoved { license },
            EventKind::MembershipChanged { voters, learners } => {
                EventWhat::MembershipChanged { voters, learners }
            }
            EventKind::RetentionChanged { retention } => EventWhat::RetentionChanged {
                retention_days: retention.max_age_days,
                max_events: retention.max_events,
            },
        }
    }
}

impl From<&Event> for EventBody {
    fn from(e: &Event) -> Self {
        EventBody {
            seq: e.seq,
            index: e.index,
            time: e.time,
            clock: e.clock,
            what: (&e.kind).into(),
        }
    }
}

impl From<&Page> for EventsBody {
    fn from(page: &Page) -> Self {
        EventsBody {
            events: page.events.iter().map(Into::into).collect(),
            next: page.next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use licd_raft::Code;
    use licd_raft::events::{EventLog, Retention};

    #[test]
    fn an_event_is_flat_json_named_by_its_kind_and_reads_back() {
        let mut log = EventLog::with_retention(Retention::default());
        log.record(
            9,
            None,
            Timestamp(1_500),
            vec![EventKind::Freed {
                node: NodeName::new("app-1").unwrap(),
                license: LicenseId::new("lic-1").unwrap(),
                counted_cores: 8,
                by: FreedBy::LicenseReplaced,
                code: Some(Code::CpuLimitExhausted),
            }],
        );
        let body = EventsBody::from(&log.after(0, 10));
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "events": [{
                    "seq": 1, "index": 9, "time": null, "clock": 1500,
                    "kind": "freed", "node": "app-1", "license": "lic-1",
                    "counted_cores": 8, "reason": "license_replaced",
                    "code": "CPU_LIMIT_EXHAUSTED"
                }],
                "next": 1
            })
        );
        let back: EventsBody = serde_json::from_value(json).unwrap();
        assert_eq!(back, body);
    }
}
