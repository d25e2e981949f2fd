//! The content rule: a watched secret's value recognised in the bytes a process sends off this
//! host. From a tainted process it confirms the data-flow alert, at critical severity; from a
//! trusted service, which holds its secrets by right and is never tainted by them, it is the
//! only sign that one left. Each value is reported once per (process, destination); repeats
//! are counted.

use std::{collections::HashSet, net::SocketAddr};

use crate::content::ContentMatch;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    pid: u32,
    start_ns: u64,
    destination: SocketAddr,
    /// The value's keyed fingerprint: one value, whichever encoding carried it.
    fingerprint: String,
}

/// The values already reported, by sender and destination.
#[derive(Debug, Default)]
pub struct Confirmations {
    reported: HashSet<Key>,
    repeats: u64,
}

impl Confirmations {
    /// The matches in `found` not reported yet for the process `pid` (started at `start_ns`)
    /// and `destination`.
    pub fn fresh(
        &mut self,
        pid: u32,
        start_ns: u64,
        destination: SocketAddr,
        found: Vec<ContentMatch>,
    ) -> Vec<ContentMatch> {
        let mut fresh = Vec::new();
        for found in found {
            let key = Key { pid, start_ns, destination, fingerprint: found.fingerprint.clone() };
            if self.reported.insert(key) {
                fresh.push(found);
            } else {
                self.repeats += 1;
            }
        }
        fresh
    }

    /// The process `pid` exited: what it sent is forgotten (a reused pid starts clean).
    pub fn exited(&mut self, pid: u32) {
        self.reported.retain(|key| key.pid != pid);
    }

    /// Values sent again to a destination they were already reported for.
    pub fn repeats(&self) -> u64 {
        self.repeats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{Encoding, Source};

    fn found(fingerprint: &str, encoding: Encoding) -> ContentMatch {
        ContentMatch {
            secret: "form_secret of homeserver.yaml".to_owned(),
            source: Source::TokenFormat,
            encoding,
            fingerprint: fingerprint.to_owned(),
        }
    }

    #[test]
    fn a_value_is_reported_once_per_process_and_destination_whatever_its_encoding() {
        let mut confirmations = Confirmations::default();
        let there: SocketAddr = "10.0.0.2:443".parse().unwrap();
        let elsewhere: SocketAddr = "10.0.0.3:443".parse().unwrap();
        assert_eq!(confirmations.fresh(7, 1, there, vec![found("abc", Encoding::Raw)]).len(), 1);
        assert!(confirmations.fresh(7, 1, there, vec![found("abc", Encoding::Base64)]).is_empty());
        assert_eq!(confirmations.fresh(7, 1, elsewhere, vec![found("abc", Encoding::Raw)]).len(), 1);
        assert_eq!(confirmations.fresh(7, 1, there, vec![found("def", Encoding::Raw)]).len(), 1);
        assert_eq!(confirmations.repeats(), 1);
    }

    #[test]
    fn a_reused_pid_is_reported_anew() {
        let mut confirmations = Confirmations::default();
        let there: SocketAddr = "10.0.0.2:443".parse().unwrap();
        confirmations.fresh(7, 1, there, vec![found("abc", Encoding::Raw)]);
        confirmations.exited(7);
        assert_eq!(confirmations.fresh(7, 2, there, vec![found("abc", Encoding::Raw)]).len(), 1);
    }
}
