//! The gaps between successive successful writes: how long a caller saw no progress.
//!
//! A write loop records when each successful write completed, as offsets from the loop's
//! start. The first gap runs from the start to the first success; each next one from a success
//! to the following one. The longest gap is the outage a caller lived through; the p99 gap
//! says how rare long ones are.

use serde::{Deserialize, Serialize};

use super::stats::percentile;

/// The gaps of one write loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GapSummary {
    /// Successful writes.
    pub successes: u64,
    /// The longest gap, in milliseconds.
    pub longest_ms: f64,
    /// The 99th percentile gap, in milliseconds.
    pub p99_ms: f64,
    /// The median gap, in milliseconds.
    pub p50_ms: f64,
}

/// Computes the gaps of success offsets in microseconds, which must be in ascending order;
/// an empty or disordered list is an error, not a summary.
pub fn gaps(successes_us: &[u64]) -> Result<GapSummary, String> {
    if successes_us.is_empty() {
        return Err("no write succeeded".into());
    }
    if let Some(i) = successes_us.windows(2).position(|w| w[0] > w[1]) {
        return Err(format!(
            "success times out of order at {}: {} after {}",
            i + 1,
            successes_us[i + 1],
            successes_us[i]
        ));
    }
    let mut gaps: Vec<u64> = Vec::with_capacity(successes_us.len());
    gaps.push(successes_us[0]);
    gaps.extend(successes_us.windows(2).map(|w| w[1] - w[0]));
    gaps.sort_unstable();
    let ms = |us: u64| us as f64 / 1000.0;
    Ok(GapSummary {
        successes: successes_us.len() as u64,
        longest_ms: ms(*gaps.last().unwrap_or(&0)),
        p99_ms: ms(percentile(&gaps, 0.99).unwrap_or(0)),
        p50_ms: ms(percentile(&gaps, 0.5).unwrap_or(0)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_of_known_successes() {
        // Writes every 10 ms, one outage of 1.5 s after the 50th.
        let mut t = 0;
        let mut at = Vec::new();
        for i in 0..200 {
            t += if i == 50 { 1_500_000 } else { 10_000 };
            at.push(t);
        }
        let g = gaps(&at).unwrap();
        assert_eq!(g.successes, 200);
        assert_eq!(g.longest_ms, 1500.0);
        assert_eq!(g.p50_ms, 10.0);
        // 199 gaps of 10 ms and one of 1.5 s: the 99th percentile (rank 198) is 10 ms.
        assert_eq!(g.p99_ms, 10.0);
    }

    #[test]
    fn the_first_gap_counts_from_the_start() {
        let g = gaps(&[400_000, 410_000]).unwrap();
        assert_eq!(g.longest_ms, 400.0);
    }

    #[test]
    fn empty_and_disordered_successes_are_refused() {
        assert!(gaps(&[]).unwrap_err().contains("no write"));
        let err = gaps(&[10, 30, 20]).unwrap_err();
        assert!(err.contains("out of order at 2"), "{err}");
    }
}
