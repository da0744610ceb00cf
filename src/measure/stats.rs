//! Statistics of repeated measurements, as benchmarks report them (as hyperfine does: mean ± standard deviation beside
//! median, min and max), and whether two of them differ by more than their noise.

use serde::{Deserialize, Serialize};

/// Mean ± standard deviation, median, min and max of repeated measurements, and the samples themselves.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
    /// Every sample, in the order measured (absent in results from before schema 2).
    #[serde(default)]
    pub samples: Vec<f64>,
    /// The samples' mean and (sample, n − 1) standard deviation (absent in results from before schema 3: `filled`
    /// computes them from the samples where there are some).
    #[serde(default)]
    pub mean: f64,
    #[serde(default)]
    pub std_dev: f64,
}

impl Stats {
    pub fn of(samples: Vec<f64>) -> Stats {
        assert!(!samples.is_empty());
        let mut v = samples.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) };
        let mean = v.iter().sum::<f64>() / n as f64;
        let var = if n > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
        Stats { median, min: v[0], max: v[n - 1], runs: n, samples, mean, std_dev: var.sqrt() }
    }

    /// The same, with the mean and standard deviation computed from the samples where an older result lacks them.
    pub fn filled(self) -> Stats {
        if self.mean == 0.0 && !self.samples.is_empty() {
            Stats::of(self.samples)
        } else {
            self
        }
    }

    /// (max − min) / median: how far apart the samples lie.
    pub fn spread(&self) -> f64 {
        if self.median > 0.0 {
            (self.max - self.min) / self.median
        } else {
            0.0
        }
    }

    /// The coefficient of variation σ / mean (0 for one sample).
    pub fn cv(&self) -> f64 {
        if self.mean > 0.0 {
            self.std_dev / self.mean
        } else {
            0.0
        }
    }
}

/// Above this coefficient of variation a benchmark warns that its samples spread (hyperfine warns on outliers).
pub const NOISY_CV: f64 = 0.05;

/// How `new` compares with `old`, where a larger value is better (throughput).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Change {
    /// new / old, beyond the noise.
    Better(f64),
    Worse(f64),
    /// new / old, within the noise of the two.
    WithinNoise(f64),
}

impl Change {
    /// Whether the medians differ by more than the runs' noise: not if their [min, max] ranges overlap, nor if the
    /// means differ by less than twice the standard error of their difference (a two-sided test at about 95 % for
    /// normal samples). One-sample runs have no noise to go by but their ranges.
    pub fn of(old: &Stats, new: &Stats) -> Change {
        let ratio = new.median / old.median;
        let overlap = new.min <= old.max && old.min <= new.max;
        let (o, n) = (old.clone().filled(), new.clone().filled());
        let se = (o.std_dev.powi(2) / o.runs.max(1) as f64 + n.std_dev.powi(2) / n.runs.max(1) as f64).sqrt();
        let close = se > 0.0 && (n.mean - o.mean).abs() < 2.0 * se;
        match ratio {
            _ if overlap || close => Change::WithinNoise(ratio),
            r if r > 1.0 => Change::Better(r),
            r => Change::Worse(r),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Change::Better(r) => format!("{r:.2}× (faster)"),
            Change::Worse(r) => format!("{r:.2}× (slower)"),
            Change::WithinNoise(r) => format!("{r:.2}× (within noise)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_median_min_max_mean_and_deviation() {
        let s = Stats::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max, s.runs, s.mean, s.std_dev), (2.0, 1.0, 3.0, 3, 2.0, 1.0));
        assert_eq!(Stats::of(vec![4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert_eq!(Stats::of(vec![7.0]).std_dev, 0.0);
        // An older result without them: computed from its samples.
        let old = Stats { mean: 0.0, std_dev: 0.0, ..Stats::of(vec![10.0, 12.0]) }.filled();
        assert_eq!((old.mean, old.std_dev), (11.0, 2f64.sqrt()));
        assert!((Stats::of(vec![100.0, 110.0, 90.0]).cv() - 0.1).abs() < 1e-12);
    }

    #[test]
    fn a_change_is_told_from_noise() {
        let base = Stats::of(vec![100.0, 103.0, 97.0, 101.0, 99.0]);
        // The same machine again, a little faster on the median: within the noise.
        let again = Stats::of(vec![102.0, 98.0, 104.0, 100.0, 101.0]);
        assert!(matches!(Change::of(&base, &again), Change::WithinNoise(_)));
        // Twice as fast, or half: told apart, and which way.
        let twice = Stats::of(base.samples.iter().map(|v| 2.0 * v).collect());
        assert!(matches!(Change::of(&base, &twice), Change::Better(r) if (r - 2.0).abs() < 1e-12));
        assert!(matches!(Change::of(&twice, &base), Change::Worse(r) if (r - 0.5).abs() < 1e-12));
        // 5 % faster with a tight spread: a change; with a wide one, noise.
        let tight = Stats::of(vec![100.0, 100.5, 99.5, 100.2, 99.8]);
        let tight_faster = Stats::of(tight.samples.iter().map(|v| 1.05 * v).collect());
        assert!(matches!(Change::of(&tight, &tight_faster), Change::Better(_)));
        let wide = Stats::of(vec![80.0, 120.0, 100.0, 90.0, 110.0]);
        let wide_faster = Stats::of(wide.samples.iter().map(|v| 1.05 * v).collect());
        assert!(matches!(Change::of(&wide, &wide_faster), Change::WithinNoise(_)));
    }
}
