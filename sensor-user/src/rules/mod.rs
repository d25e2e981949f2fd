//! The rules: state and a kernel record in, findings out.

pub mod content;
pub mod exfiltration;
