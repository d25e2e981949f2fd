//! Vigie's kernel programs.
//!
//! Data flows one way: these programs watch process lifecycle, reads of secret data (in the page
//! cache, or at the syscalls on the fallback backend), the channels a tainted process writes
//! into and outbound traffic, keep the taint state in kernel maps so the decision "does this
//! connect matter?" is made here, and write only what matters into one ring buffer for the
//! agent. Which programs are attached is the agent's choice (`kernel/backend.rs`).
#![no_std]
#![no_main]
// The atomic instructions of the BPF ISA (`atomic.rs`).
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod allowance;
mod atomic;
mod channels;
mod emit;
mod files;
mod gates;
mod kernel;
mod maps;
mod memory;
mod network;
mod outbound;
mod process;
mod stores;
mod syscall_abi;
mod syscalls;
mod taint;
mod tls;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program whose code can reach this: it is never run.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
