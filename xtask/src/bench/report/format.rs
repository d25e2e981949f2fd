//! How numbers are written in the report.

#[derive(Clone, Copy)]
pub enum Unit {
    Ns,
    Us,
    MBps,
    ReqPerS,
}

impl Unit {
    pub fn show(self, value: f64) -> String {
        match self {
            Unit::Ns => format!("{} ns", group_f(value)),
            Unit::Us => format!("{:.1} µs", value / 1e3),
            Unit::MBps => format!("{} MB/s", group_f(value / 1e6)),
            Unit::ReqPerS => format!("{} req/s", group_f(value)),
        }
    }
}

pub fn sign(value: f64) -> &'static str {
    if value < 0.0 {
        "−"
    } else {
        "+"
    }
}

pub fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "—",
    }
}

/// KiB → MB (10^6 bytes).
#[expect(clippy::cast_precision_loss, reason = "memory sizes are far below 2^52")]
pub fn mb(kib: u64) -> f64 {
    (kib * 1024) as f64 / 1e6
}

/// 1234567 → "1,234,567".
pub fn group(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A non-negative measurement rounded to a whole number, grouped; "?" if not a number.
pub fn group_f(value: f64) -> String {
    if !value.is_finite() || value < 0.0 {
        return "?".to_owned();
    }
    #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "finite, non-negative")]
    group(value.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::{group, group_f};

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(group_f(1_499.6), "1,500");
        assert_eq!(group_f(f64::NAN), "?");
    }
}
