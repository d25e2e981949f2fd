//! The rules: state and a kernel record in, findings out.

pub mod exfiltration;
pub mod content;
