//! Alerts and state as documents: typed Elastic Common Schema, one JSON object per line.

pub mod ecs;
