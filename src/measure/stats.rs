//! Statistics of repeated measurements, as benchmarks report them.

use serde::{Deserialize, Serialize};

/// Median, min and max of repeated measurements, and the samples themselves.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
    /// Every sample, in the order measured (absent in results from before schema 2).
    #[serde(default)]
    pub samples: Vec<f64>,
}

impl Stats {
    pub fn of(mut v: Vec<f64>) -> Stats {
        assert!(!v.is_empty());
        let samples = v.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) };
        Stats { median, min: v[0], max: v[n - 1], runs: n, samples }
    }

    /// (max − min) / median: how far apart the samples lie.
    pub fn spread(&self) -> f64 {
        if self.median > 0.0 {
            (self.max - self.min) / self.median
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_median_min_max() {
        let s = Stats::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max, s.runs), (2.0, 1.0, 3.0, 3));
        assert_eq!(Stats::of(vec![4.0, 1.0, 2.0, 3.0]).median, 2.5);
    }
}
