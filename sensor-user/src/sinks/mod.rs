//! Where documents go.

pub mod output;
