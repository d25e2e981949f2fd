//! `vigie-load`: the load loops behind `cargo xtask bench`.
//!
//! xtask runs as a debug build, so every timed loop lives here and is built in release. Each
//! subcommand prints one JSON line on stdout saying what it did and how long it took; the
//! bench does the statistics. Every loop is bounded in count and in time, and traffic only
//! goes where the bench points it: loopback, or the namespace host the bench created.

mod bound;
mod exfiltrate;
mod flood;
mod hold;
mod loopback_connect;
mod open_read;
mod secret;
mod sink;
mod stream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "vigie-load", about = "Load loops of `cargo xtask bench`; one JSON result line each")]
struct Cli {
    #[command(subcommand)]
    load: Load,
}

#[derive(Subcommand)]
enum Load {
    /// open + read 64 B + close of PATH, ITERATIONS times after a short untimed warm-up.
    OpenRead {
        #[arg(long)]
        path: PathBuf,
        #[arg(long)]
        iterations: u64,
        #[arg(long, default_value_t = 120)]
        max_seconds: u64,
    },
    /// TCP connect + close to a listener of its own on 127.0.0.1, ITERATIONS times.
    LoopbackConnect {
        #[arg(long)]
        iterations: u64,
        #[arg(long, default_value_t = 120)]
        max_seconds: u64,
    },
    /// Read SECRET (taint), then send BYTES to ADDR in CHUNK-byte writes; the sink acknowledges.
    Stream {
        #[arg(long)]
        secret: PathBuf,
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        bytes: u64,
        #[arg(long, default_value_t = 16 * 1024)]
        chunk: usize,
        #[arg(long, default_value_t = 120)]
        max_seconds: u64,
    },
    /// Accept on ADDR: read each connection to EOF and answer the byte count. Says `ready`.
    Sink {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long, default_value_t = 3600)]
        max_seconds: u64,
    },
    /// COUNT distinct processes, one after the other, each reads SECRET and connects to ADDR.
    Exfiltrate {
        #[arg(long)]
        secret: PathBuf,
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        count: u64,
        #[arg(long, default_value_t = 120)]
        max_seconds: u64,
    },
    /// One exfiltrating process: prints the `CLOCK_REALTIME` ns at which it called `connect()`
    /// and at which the call returned.
    #[command(hide = true)]
    ExfiltrateOnce {
        #[arg(long)]
        secret: PathBuf,
        #[arg(long)]
        addr: SocketAddr,
    },
    /// WORKERS processes each read SECRET once, then connect to ADDR for SECONDS, as fast as
    /// they can or at RATE connects per second.
    Flood {
        #[command(flatten)]
        spec: flood::Spec,
        #[arg(long)]
        workers: u32,
    },
    /// One flooding process.
    #[command(hide = true)]
    FloodWorker {
        #[command(flatten)]
        spec: flood::Spec,
    },
    /// Read SECRET once, then stay alive, silent, until killed or `MAX_SECONDS` have passed.
    HoldTaint {
        #[arg(long)]
        secret: PathBuf,
        #[arg(long, default_value_t = 600)]
        max_seconds: u64,
    },
}

fn main() -> Result<()> {
    let result = match Cli::parse().load {
        Load::OpenRead { path, iterations, max_seconds } => {
            open_read::run(&path, iterations, Duration::from_secs(max_seconds))?
        }
        Load::LoopbackConnect { iterations, max_seconds } => {
            loopback_connect::run(iterations, Duration::from_secs(max_seconds))?
        }
        Load::Stream { secret, addr, bytes, chunk, max_seconds } => {
            stream::run(&secret, addr, bytes, chunk, Duration::from_secs(max_seconds))?
        }
        Load::Sink { listen, max_seconds } => return sink::run(listen, Duration::from_secs(max_seconds)),
        Load::Exfiltrate { secret, addr, count, max_seconds } => {
            exfiltrate::run(&secret, addr, count, Duration::from_secs(max_seconds))?
        }
        Load::ExfiltrateOnce { secret, addr } => return exfiltrate::once(&secret, addr),
        Load::Flood { spec, workers } => flood::run(&spec, workers)?,
        Load::FloodWorker { spec } => flood::worker(&spec)?,
        Load::HoldTaint { secret, max_seconds } => {
            return hold::run(&secret, Duration::from_secs(max_seconds))
        }
    };
    println!("{result}");
    Ok(())
}
