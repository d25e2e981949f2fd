//! A/B rows of the summary table: the cost cell from the median of pairs, then the target.

use std::fmt::Write;

use super::format::{sign, verdict, Unit};
use crate::bench::stats::Paired;

/// An A/B workload's pairs: wall clock, and the looping thread's CPU time where known.
#[derive(Clone, Copy)]
pub struct Cost<'a> {
    pub wall: &'a Paired,
    pub cpu: Option<&'a Paired>,
}

impl<'a> Cost<'a> {
    pub fn of(wall: &'a Paired, cpu: &'a Paired) -> Self {
        Self { wall, cpu: Some(cpu) }
    }

    /// CPU-time slowdown in percent; NaN when not measured.
    pub fn cpu_percent(&self) -> f64 {
        self.cpu.map_or(f64::NAN, Paired::median_change_percent)
    }

    /// Both slowdowns (the CPU one where measured) at most `limit` percent.
    pub fn at_most(&self, limit: f64) -> bool {
        let cpu = self.cpu_percent();
        self.wall.median_change_percent() <= limit && (cpu.is_nan() || cpu <= limit)
    }

    /// Both slowdowns (the CPU one where measured on both sides) below `other`'s.
    pub fn below(&self, other: &Cost<'_>) -> bool {
        let (cpu, other_cpu) = (self.cpu_percent(), other.cpu_percent());
        self.wall.median_change_percent() < other.wall.median_change_percent()
            && (cpu.is_nan() || other_cpu.is_nan() || cpu < other_cpu)
    }
}

/// A summary row of an A/B workload; finished by saying whether its target was met.
pub fn row<'a>(
    out: &'a mut String,
    number: &str,
    what: &str,
    cost: Cost<'_>,
    unit: Unit,
    target: &str,
) -> Row<'a> {
    let pairs = cost.wall;
    let difference = pairs.median_difference();
    let percent = pairs.median_change_percent();
    let cpu = cost.cpu_percent();
    let cpu = if cpu.is_nan() { String::new() } else { format!("; CPU {}{:.1} %", sign(cpu), cpu.abs()) };
    let _ = write!(
        out,
        "| {number} | {what} | {} | {} | {}{}, {}{:.1} %{cpu} | {target} |",
        unit.show(pairs.median_baseline()),
        unit.show(pairs.median_treated()),
        sign(difference),
        unit.show(difference.abs()),
        sign(percent),
        percent.abs(),
    );
    Row { out }
}

pub struct Row<'a> {
    pub out: &'a mut String,
}

impl Row<'_> {
    /// Ends a row whose target cell is already written.
    pub fn met(self, met: bool) {
        let _ = writeln!(self.out, " {} |", verdict(Some(met)));
    }

    /// Ends a row whose target cell is still to write.
    pub fn target(self, target: &str, met: Option<bool>) {
        let _ = writeln!(self.out, " {target} | {} |", verdict(met));
    }

    pub fn untargeted(self) {
        let _ = writeln!(self.out, " {} |", verdict(None));
    }
}
