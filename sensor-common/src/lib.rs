//! Types shared by Vigie's kernel programs and its agent.
//!
//! Everything here is `#[repr(C)]` with explicit padding: the kernel writes these bytes into
//! maps and the ring buffer, the agent reads them back, and both must agree to the byte.
//! The `user` feature adds `aya::Pod` so the agent can use them as map keys and values.
#![no_std]
#![expect(
    clippy::pub_underscore_fields,
    reason = "explicit padding is public so both sides build whole records"
)]

#[cfg(test)]
extern crate std;

pub mod event;
pub mod kernel_offsets;
pub mod prefilter;
pub mod state;

pub use event::*;
pub use kernel_offsets::KernelOffsets;
pub use state::*;
