//! Medians of pairs and latency percentiles: the only statistics the report uses.

/// Middle value (mean of the two middle ones for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let sorted = sorted(values);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => f64::midpoint(sorted[n / 2 - 1], sorted[n / 2]),
    }
}

/// Nearest-rank percentile, `p` in 0..=100; NaN when empty.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let sorted = sorted(values);
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[expect(clippy::cast_precision_loss, reason = "sample counts are small")]
    let rank = (p / 100.0 * sorted.len() as f64).ceil();
    #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "rank is in 0..=len")]
    let index = (rank as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// Largest value; NaN when empty.
pub fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}

/// One measurement per round, with and without the thing under test.
#[derive(Debug, Clone, Default)]
pub struct Paired {
    pub baseline: Vec<f64>,
    pub treated: Vec<f64>,
}

impl Paired {
    pub fn push(&mut self, baseline: f64, treated: f64) {
        self.baseline.push(baseline);
        self.treated.push(treated);
    }

    pub fn len(&self) -> usize {
        self.baseline.len().min(self.treated.len())
    }

    pub fn median_baseline(&self) -> f64 {
        median(&self.baseline)
    }

    pub fn median_treated(&self) -> f64 {
        median(&self.treated)
    }

    /// Median over rounds of `treated - baseline`.
    pub fn median_difference(&self) -> f64 {
        median(&self.pairs().map(|(a, b)| b - a).collect::<Vec<_>>())
    }

    /// Median over rounds of the relative change, in percent (+ = treated is larger).
    pub fn median_change_percent(&self) -> f64 {
        median(&self.pairs().map(|(a, b)| (b / a - 1.0) * 100.0).collect::<Vec<_>>())
    }

    fn pairs(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.baseline.iter().copied().zip(self.treated.iter().copied())
    }
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    sorted
}

#[cfg(test)]
mod tests {
    use super::{max, median, percentile, Paired};

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert!((median(&[3.0, 1.0, 2.0]) - 2.0).abs() < 1e-9);
        assert!((median(&[4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < 1e-9);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((percentile(&values, 50.0) - 50.0).abs() < 1e-9);
        assert!((percentile(&values, 99.0) - 99.0).abs() < 1e-9);
        assert!((percentile(&values, 100.0) - 100.0).abs() < 1e-9);
        assert!((percentile(&[7.0], 99.0) - 7.0).abs() < 1e-9);
        assert!((max(&values) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn pairs_compare_round_by_round() {
        let mut paired = Paired::default();
        paired.push(100.0, 103.0);
        paired.push(200.0, 202.0);
        paired.push(100.0, 110.0);
        assert_eq!(paired.len(), 3);
        assert!((paired.median_difference() - 3.0).abs() < 1e-9);
        assert!((paired.median_change_percent() - 3.0).abs() < 1e-9);
    }
}
