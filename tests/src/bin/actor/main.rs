//! `vigie-actor`: a deterministic stand-in for a credential thief, driven by the integration tests.
//!
//! ```text
//! vigie-actor STEP...
//! vigie-actor listen PORT [--udp PORT]...
//! ```
//!
//! The first form carries out its steps in the order given, then prints
//! `{"pid":X,"child_pid":Y|null}` and exits 0; any failing step makes it exit 1 with the reason
//! on stderr. The steps:
//!
//! | step | what it does |
//! |---|---|
//! | `--read PATH` | `open` + `read` to the end |
//! | `--read-reopened PATH` | open, then open `/proc/self/fd/N` again and read that |
//! | `--read-o-path PATH` | `open(O_PATH)`, then open `/proc/self/fd/N` for reading and read |
//! | `--read-ia32 PATH` | `open` + `read` through the ia32 gate (`int 0x80`, i386 numbers) |
//! | `--read-by-handle PATH` | `name_to_handle_at` + `open_by_handle_at`, then `read` |
//! | `--mmap PATH` | open, `mmap`, touch every byte; no `read` |
//! | `--read-direct PATH` | `open(O_DIRECT)` + `read` to the end: no page cache |
//! | `--map-kept PATH` | `mmap` PATH and keep it mapped until exit (as a loaded library) |
//! | `--uring-read PATH` | `IORING_OP_OPENAT` + `IORING_OP_READ`; no `open`/`read` syscall |
//! | `--uring-read-openat2 PATH` | the same with `IORING_OP_OPENAT2` |
//! | `--uring-read-fixed PATH` | `IORING_OP_OPENAT` into a direct descriptor, then a fixed-file read |
//! | `--fork` | the remaining steps run in a forked child, which the actor waits for |
//! | `--sleep-ms MS` | pause |
//! | `--tcp IP:PORT` | connect, write a few bytes, close |
//! | `--udp IP:PORT` | one datagram |
//! | `--dns IP:PORT` | one DNS query (an A question) over UDP |
//! | `--uring-tcp IP:PORT` | `IORING_OP_CONNECT` + `IORING_OP_SEND` on a fresh socket |
//! | `--open-tcp IP:PORT` | connect and keep the connection for the steps below |
//! | `--send BYTES` | write BYTES bytes on the kept connection |
//! | `--sendfile PATH` | `sendfile` PATH into the kept connection |
//! | `--splice PATH` | `splice` PATH into a pipe and the pipe into the kept connection |
//! | `--write-to PATH` | open PATH for writing (creating it) and write what was last read |
//! | `--uring-write-to PATH` | the same with `IORING_OP_OPENAT` + `IORING_OP_WRITE` |
//! | `--unix-send PATH` | connect to the unix stream socket PATH and write what was last read |
//! | `--unix-listen PATH` | bind and listen on the unix stream socket PATH |
//! | `--unix-accept` | accept one peer on that socket and read it to its end |
//!
//! The bytes read are kept in memory only (for `--write-to` and `--unix-send`); they are never
//! printed. The second form is the far end that runs inside a test's network namespace: see
//! `listen.rs`.

mod evasion;
mod listen;
mod network;
mod plan;
mod reach;
mod relay;
mod uring;

use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let outcome = if args.first().is_some_and(|a| a == "listen") {
        listen::run(&args[1..])
    } else {
        plan::Plan::parse(&args).and_then(|plan| plan.carry_out())
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vigie-actor: {error:#}");
            ExitCode::FAILURE
        }
    }
}
