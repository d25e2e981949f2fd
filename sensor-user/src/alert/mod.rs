//! What turns a finding into an alert fit to print: its arguments redacted.

pub mod redact;
