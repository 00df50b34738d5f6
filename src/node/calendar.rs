//! [`Calendar`]: the cluster's calendar time, which no single node's wall clock decides.
//!
//! License issue and expiry dates need a wall clock. Every answer a peer gives to the
//! leader's Raft RPCs carries the peer's wall-clock time, so the leader knows each voter's
//! offset from its own clock (to within half a round trip). The cluster's calendar time is
//! the **median** of the voters' clocks, and it is trusted only while a majority of the
//! voters (the leader included) lie within the skew bound of that median:
//! - one node's clock ahead or behind by any amount moves nothing: with three voters the
//!   median is one of the two others;
//! - a skewed node is reported (its skew against the median) and never obeyed;
//! - when no majority agrees (say one voter down and the other two apart by more than the
//!   bound), date decisions use the last agreed time carried forward on the leader's
//!   monotonic clock, and before any agreement, none at all: entries then carry no time and
//!   the cluster clock stays where it is.
//!
//! Leases never use this time: they are elapsed time ([`super::lessor`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use licd_raft::RaftNodeId;
use licd_raft::types::Timestamp;

/// How old a peer's clock sample may be and still count.
pub const SAMPLE_FRESHNESS: Duration = Duration::from_secs(5);

/// A peer's wall clock as the leader measured it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSample {
    /// The peer's clock minus this node's, in milliseconds.
    pub offset_ms: i64,
    /// When it was taken, on this node's monotonic clock.
    pub at: Instant,
}

/// How the voters' clocks stand, as the leader sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// The offset to add to this node's clock to get the cluster's calendar time, when a
    /// majority of voters agree with it.
    pub offset_ms: Option<i64>,
    /// Each voter's clock minus the cluster's (for this node too), where known.
    pub skew_ms: BTreeMap<RaftNodeId, i64>,
}

/// The offset from this node's clock to the median of the voters' clocks, if a majority of
/// voters lie within `bound` of it. `samples` are the fresh offsets of the other voters.
pub fn agree(
    this: RaftNodeId,
    voters: &[RaftNodeId],
    samples: &BTreeMap<RaftNodeId, i64>,
    bound: Duration,
) -> Agreement {
    let mut known: BTreeMap<RaftNodeId, i64> = voters
        .iter()
        .filter_map(|v| {
            if *v == this {
                Some((*v, 0))
            } else {
                samples.get(v).map(|o| (*v, *o))
            }
        })
        .collect();
    if !voters.contains(&this) {
        known.insert(this, 0);
    }
    let mut offsets: Vec<i64> = known.values().copied().collect();
    offsets.sort_unstable();
    let bound_ms = i64::try_from(bound.as_millis()).unwrap_or(i64::MAX);
    let majority = voters.len() / 2 + 1;
    let mut agreed = None;
    if !offsets.is_empty() {
        // With an even count, both middle values are tried: whichever a majority agrees with.
        let candidates = [offsets[(offsets.len() - 1) / 2], offsets[offsets.len() / 2]];
        for median in candidates {
            let within = known
                .iter()
                .filter(|(id, o)| voters.contains(id) && (**o - median).abs() <= bound_ms)
                .count();
            if within >= majority {
                agreed = Some(median);
                break;
            }
        }
    }
    let skew_ms = match agreed {
        Some(median) => known.iter().map(|(id, o)| (*id, o - median)).collect(),
        None => BTreeMap::new(),
    };
    Agreement {
        offset_ms: agreed,
        skew_ms,
    }
}

/// The leader's calendar: the last agreed time, carried forward on the monotonic clock.
#[derive(Debug, Default)]
pub struct Calendar {
    anchor: Option<(Timestamp, Instant)>,
}

impl Calendar {
    /// The cluster's calendar time now: this node's wall clock `wall` corrected by the
    /// agreed offset, or else the last agreed time plus the monotonic time since; `None`
    /// before any agreement.
    pub fn now(
        &mut self,
        wall: Timestamp,
        agreement: &Agreement,
        mono: Instant,
    ) -> Option<Timestamp> {
        match agreement.offset_ms {
            Some(offset) => {
                let time = Timestamp(wall.0.saturating_add_signed(offset));
                self.anchor = Some((time, mono));
                Some(time)
            }
            None => self.anchor.map(|(time, at)| {
                let since = u64::try_from(mono.saturating_duration_since(at).as_millis())
                    .unwrap_or(u64::MAX);
                time.plus_millis(since)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(30);
    const HOUR: i64 = 3_600_000;

    fn samples(pairs: &[(RaftNodeId, i64)]) -> BTreeMap<RaftNodeId, i64> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn agreeing_clocks_use_the_median_and_report_small_skews() {
        let a = agree(1, &[1, 2, 3], &samples(&[(2, 40), (3, -25)]), BOUND);
        assert_eq!(a.offset_ms, Some(0));
        assert_eq!(a.skew_ms, samples(&[(1, 0), (2, 40), (3, -25)]));
    }

    #[test]
    fn a_leader_an_hour_ahead_follows_the_other_two() {
        // This node is an hour ahead: the others are an hour behind it.
        let a = agree(
            1,
            &[1, 2, 3],
            &samples(&[(2, -HOUR), (3, -HOUR + 200)]),
            BOUND,
        );
        // The median is node 3's clock; node 2 is 200 ms behind it, this node an hour ahead.
        assert_eq!(a.offset_ms, Some(-HOUR + 200));
        assert_eq!(a.skew_ms[&1], HOUR - 200);
        assert_eq!(a.skew_ms[&2], -200);
        assert_eq!(a.skew_ms[&3], 0);
    }

    #[test]
    fn a_follower_years_off_is_reported_and_not_obeyed() {
        let years = 5 * 365 * 24 * HOUR;
        for off in [years, -years] {
            let a = agree(1, &[1, 2, 3], &samples(&[(2, off), (3, 10)]), BOUND);
            assert!(matches!(a.offset_ms, Some(0) | Some(10)), "{a:?}");
            assert!((a.skew_ms[&2] - off).abs() <= 10);
        }
    }

    #[test]
    fn two_clocks_that_disagree_decide_nothing() {
        let a = agree(1, &[1, 2, 3], &samples(&[(2, HOUR)]), BOUND);
        assert_eq!(a.offset_ms, None);
        assert!(a.skew_ms.is_empty());
        // Two that agree are a majority of three.
        let a = agree(1, &[1, 2, 3], &samples(&[(2, 1_000)]), BOUND);
        assert!(a.offset_ms.is_some());
    }

    #[test]
    fn a_lone_voter_agrees_with_itself() {
        let a = agree(1, &[1], &BTreeMap::new(), BOUND);
        assert_eq!(a.offset_ms, Some(0));
    }

    #[test]
    fn without_agreement_the_calendar_carries_the_last_agreed_time_forward() {
        let mut c = Calendar::default();
        let t0 = Instant::now();
        let none = Agreement {
            offset_ms: None,
            skew_ms: BTreeMap::new(),
        };
        assert_eq!(c.now(Timestamp(5_000), &none, t0), None);
        let agreed = Agreement {
            offset_ms: Some(-HOUR),
            skew_ms: BTreeMap::new(),
        };
        let wall = Timestamp(10 * HOUR as u64);
        assert_eq!(c.now(wall, &agreed, t0), Some(Timestamp(9 * HOUR as u64)));
        // The wall clock jumps a year; without agreement only monotonic time counts.
        let later = c.now(
            Timestamp(u64::MAX / 2),
            &none,
            t0 + Duration::from_millis(1_500),
        );
        assert_eq!(later, Some(Timestamp(9 * HOUR as u64 + 1_500)));
    }
}
