//! Everything that talks to the kernel: which programs this kernel can run (the backend),
//! loading and attaching them, their maps, and decoding what they write. The only part of
//! the agent that knows aya.

pub mod backend;
pub mod btf;
pub mod decode;
pub mod handover;
pub mod holders;
pub mod local_addrs;
pub mod mapped_tls;
pub mod offsets;
pub mod outbound;
pub mod pins;
mod sensor;
pub mod tls_libraries;
pub mod tmpfs;
pub mod uprobe_site;

pub use sensor::{KernelGauges, Sensor, SensorSpec};
