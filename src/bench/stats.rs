//! Latency samples to a [`Summary`]: count, errors, throughput and nearest-rank percentiles.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What one workload measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Requests answered with success.
    pub count: u64,
    /// Requests that failed (an error status or a broken connection).
    pub errors: u64,
    /// Successful requests per second of the measured time.
    pub per_second: f64,
    /// Median latency, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, in milliseconds.
    pub p99_ms: f64,
    /// 99.9th percentile latency, in milliseconds.
    pub p999_ms: f64,
    /// Slowest request, in milliseconds.
    pub max_ms: f64,
}

/// The nearest-rank `q` quantile (0 < q <= 1) of ascending `sorted` samples: the smallest
/// sample that at least a fraction `q` of the samples do not exceed. `None` when empty.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len() as f64;
    let rank = (q.clamp(0.0, 1.0) * n).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

fn us_to_ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Summarizes latencies in microseconds measured over `elapsed`.
pub fn summarize(mut latencies_us: Vec<u64>, errors: u64, elapsed: Duration) -> Summary {
    latencies_us.sort_unstable();
    let at = |q| us_to_ms(percentile(&latencies_us, q).unwrap_or(0));
    let secs = elapsed.as_secs_f64();
    Summary {
        count: latencies_us.len() as u64,
        errors,
        per_second: if secs > 0.0 {
            latencies_us.len() as f64 / secs
        } else {
            0.0
        },
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        p999_ms: at(0.999),
        max_ms: us_to_ms(latencies_us.last().copied().unwrap_or(0)),
    }
}

/// Checks that a summary is plausible: something was measured and p50 <= p99 <= p99.9 <= max.
pub fn check_summary(s: &Summary) -> Result<(), String> {
    if s.count == 0 {
        return Err("no request succeeded".into());
    }
    let ordered = [s.p50_ms, s.p99_ms, s.p999_ms, s.max_ms];
    if ordered.iter().any(|v| !v.is_finite() || *v < 0.0) {
        return Err(format!(
            "a latency is negative or not a number: {ordered:?}"
        ));
    }
    if ordered.windows(2).any(|w| w[0] > w[1]) {
        return Err(format!(
            "percentiles out of order: p50 {} p99 {} p99.9 {} max {}",
            s.p50_ms, s.p99_ms, s.p999_ms, s.max_ms
        ));
    }
    if s.per_second.is_nan() || s.per_second <= 0.0 {
        return Err(format!("throughput {} is not positive", s.per_second));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_of_one_to_a_thousand() {
        let samples: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&samples, 0.5), Some(500));
        assert_eq!(percentile(&samples, 0.99), Some(990));
        assert_eq!(percentile(&samples, 0.999), Some(999));
        assert_eq!(percentile(&samples, 1.0), Some(1000));
        assert_eq!(percentile(&[7], 0.5), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn summary_of_known_latencies() {
        // 1 ms to 100 ms, shuffled: summarize sorts them.
        let mut us: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        us.reverse();
        let s = summarize(us, 3, Duration::from_secs(2));
        assert_eq!(s.count, 100);
        assert_eq!(s.errors, 3);
        assert_eq!(s.per_second, 50.0);
        assert_eq!(
            (s.p50_ms, s.p99_ms, s.p999_ms, s.max_ms),
            (50.0, 99.0, 100.0, 100.0)
        );
        assert_eq!(check_summary(&s), Ok(()));
    }

    #[test]
    fn the_checker_refuses_empty_and_disordered_summaries() {
        let empty = summarize(Vec::new(), 5, Duration::from_secs(1));
        assert!(check_summary(&empty).unwrap_err().contains("no request"));
        let mut bad = summarize(vec![1000, 2000, 3000], 0, Duration::from_secs(1));
        bad.p99_ms = 0.5;
        assert!(check_summary(&bad).unwrap_err().contains("out of order"));
        let mut nan = summarize(vec![1000], 0, Duration::from_secs(1));
        nan.p999_ms = f64::NAN;
        assert!(check_summary(&nan).is_err());
    }
}
