//! Reading the guest's console: the `VIGIE-VM` lines of its init script and the `VIGIE-TEST`
//! lines of the suite, into one verdict per case the run asked for.

use std::collections::BTreeMap;
use std::fmt;

/// A console line that means something to the host.
#[derive(Debug, Clone, PartialEq)]
pub enum Line<'a> {
    /// The guest booted and is about to run the suite: `VIGIE-VM ready RELEASE UPTIME`, with
    /// the release the guest runs (`uname -r`).
    Ready(&'a str),
    /// `VIGIE-VM exit CODE`: the suite or script ended.
    Exit(&'a str),
    /// `VIGIE-TEST CASE start`.
    Start(&'a str),
    /// `VIGIE-TEST CASE ok SECONDS`.
    Passed { case: &'a str, seconds: &'a str },
    /// `VIGIE-TEST CASE fail REASON`.
    Failed { case: &'a str, reason: &'a str },
    /// Anything else: kernel messages, a failing case's details.
    Other,
}

impl<'a> Line<'a> {
    /// What `line` says. Lines are matched at their start only.
    pub fn parse(line: &'a str) -> Self {
        if let Some(rest) = line.strip_prefix("VIGIE-VM ") {
            let mut words = rest.split_whitespace();
            return match (words.next(), words.next()) {
                (Some("ready"), Some(release)) => Line::Ready(release),
                (Some("exit"), Some(code)) => Line::Exit(code),
                _ => Line::Other,
            };
        }
        let Some(rest) = line.strip_prefix("VIGIE-TEST ") else { return Line::Other };
        let mut parts = rest.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(case), Some("start"), None) => Line::Start(case),
            (Some(case), Some("ok"), seconds) => Line::Passed { case, seconds: seconds.unwrap_or("?") },
            (Some(case), Some("fail"), reason) => Line::Failed { case, reason: reason.unwrap_or("") },
            _ => Line::Other,
        }
    }
}

/// How a case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Passed, in this many seconds (as the guest measured).
    Passed(String),
    /// Failed, with the guest's reason or the host's (a timeout, the guest gone).
    Failed(String),
}

/// The cases a run asked for and what became of each.
#[derive(Debug)]
pub struct Tally {
    expected: Vec<String>,
    outcomes: BTreeMap<String, Outcome>,
    in_flight: Option<String>,
}

impl Tally {
    /// A tally waiting for `expected`.
    pub fn new(expected: &[&str]) -> Self {
        Tally {
            expected: expected.iter().map(|case| (*case).to_owned()).collect(),
            outcomes: BTreeMap::new(),
            in_flight: None,
        }
    }

    /// Takes in a suite line; other lines change nothing.
    pub fn record(&mut self, line: &Line) {
        match line {
            Line::Start(case) => self.in_flight = Some((*case).to_owned()),
            Line::Passed { case, seconds } => self.finish(case, Outcome::Passed((*seconds).to_owned())),
            Line::Failed { case, reason } => self.finish(case, Outcome::Failed((*reason).to_owned())),
            _ => {}
        }
    }

    /// The guest stopped reporting (`why`): the case in flight fails with that reason, and
    /// every case not reported yet fails as never run.
    pub fn give_up(&mut self, why: &str) {
        if let Some(case) = self.in_flight.take() {
            self.outcomes.insert(case, Outcome::Failed(format!("{why} while this case ran")));
        }
        for case in &self.expected {
            self.outcomes
                .entry(case.clone())
                .or_insert_with(|| Outcome::Failed(format!("not reported ({why})")));
        }
    }

    /// The case started and not yet reported, if any.
    pub fn in_flight(&self) -> Option<&str> {
        self.in_flight.as_deref()
    }

    /// Whether every expected case has an outcome.
    pub fn complete(&self) -> bool {
        self.expected.iter().all(|case| self.outcomes.contains_key(case))
    }

    /// Whether every expected case passed.
    pub fn passed(&self) -> bool {
        self.expected.iter().all(|case| matches!(self.outcomes.get(case), Some(Outcome::Passed(_))))
    }

    fn finish(&mut self, case: &str, outcome: Outcome) {
        if self.in_flight.as_deref() == Some(case) {
            self.in_flight = None;
        }
        self.outcomes.insert(case.to_owned(), outcome);
    }
}

/// One line per expected case, in order: `  ok    case (12.3 s)` or `  FAIL  case: reason`.
impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for case in &self.expected {
            match self.outcomes.get(case) {
                Some(Outcome::Passed(seconds)) => writeln!(f, "  ok    {case} ({seconds} s)")?,
                Some(Outcome::Failed(reason)) => writeln!(f, "  FAIL  {case}: {reason}")?,
                None => writeln!(f, "  ?     {case}: no result")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Line, Outcome, Tally};

    #[test]
    fn suite_and_init_lines_are_parsed_at_line_start_only() {
        assert_eq!(Line::parse("VIGIE-TEST pipe start"), Line::Start("pipe"));
        assert_eq!(Line::parse("VIGIE-TEST pipe ok 3.2"), Line::Passed { case: "pipe", seconds: "3.2" });
        assert_eq!(
            Line::parse("VIGIE-TEST pipe fail no alert within 60s"),
            Line::Failed { case: "pipe", reason: "no alert within 60s" }
        );
        assert_eq!(Line::parse("VIGIE-VM ready 6.1.0-57-amd64 2.31"), Line::Ready("6.1.0-57-amd64"));
        assert_eq!(Line::parse("VIGIE-VM exit 0"), Line::Exit("0"));
        assert_eq!(Line::parse("[ 1.0] VIGIE-TEST pipe ok 1"), Line::Other);
        assert_eq!(Line::parse("VIGIE-TEST pipe"), Line::Other);
    }

    #[test]
    fn every_expected_case_must_pass() {
        let mut tally = Tally::new(&["backend", "pipe"]);
        tally.record(&Line::parse("VIGIE-TEST backend start"));
        tally.record(&Line::parse("VIGIE-TEST backend ok 1.0"));
        assert!(!tally.complete() && !tally.passed());
        tally.record(&Line::parse("VIGIE-TEST pipe start"));
        tally.record(&Line::parse("VIGIE-TEST pipe fail no alert"));
        assert!(tally.complete() && !tally.passed());
        assert_eq!(tally.outcomes["pipe"], Outcome::Failed("no alert".into()));
    }

    #[test]
    fn giving_up_names_the_case_in_flight_and_fails_the_rest() {
        let mut tally = Tally::new(&["backend", "pipe", "loss"]);
        tally.record(&Line::parse("VIGIE-TEST backend start"));
        tally.record(&Line::parse("VIGIE-TEST backend ok 1.0"));
        tally.record(&Line::parse("VIGIE-TEST pipe start"));
        assert_eq!(tally.in_flight(), Some("pipe"));
        tally.give_up("no console line for 300 s");
        assert!(tally.complete() && !tally.passed());
        assert_eq!(
            tally.outcomes["pipe"],
            Outcome::Failed("no console line for 300 s while this case ran".into())
        );
        assert_eq!(
            tally.outcomes["loss"],
            Outcome::Failed("not reported (no console line for 300 s)".into())
        );
        let shown = tally.to_string();
        assert!(shown.contains("  ok    backend (1.0 s)") && shown.contains("  FAIL  loss"), "{shown}");
    }
}
