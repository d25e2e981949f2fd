//! Signals other processes aimed at the agent, as the kernel saw them generated: which are
//! acts of a process (`kill`, `tkill`, `sigqueue`, or the kernel on a tracer's behalf), and
//! which are the agent's own control (stop, reload).

use sensor_common::SignalEvent;

use super::{Act, Actor, Tampering};

const SI_USER: i32 = 0;
const SI_QUEUE: i32 = -1;
const SI_TKILL: i32 = -6;
const SI_KERNEL: i32 = 0x80;

/// How a signal was sent (`vigie.tamper.signal.sent_with`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    Kill,
    Tkill,
    Sigqueue,
    /// By the kernel in the sender's context: `PTRACE_ATTACH`'s `SIGSTOP`, an OOM kill.
    Kernel,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Tkill => "tkill",
            Self::Sigqueue => "sigqueue",
            Self::Kernel => "kernel",
        }
    }
}

/// What the agent makes of signal `number`: its stop, its reload, or something done to it.
pub fn act(number: u32, origin: Origin, thread: u32) -> Act {
    match number {
        n if n == libc::SIGTERM as u32 || n == libc::SIGINT as u32 => {
            Act::StopSignal { number, origin, thread }
        }
        n if n == libc::SIGHUP as u32 => Act::ReloadSignal { number, origin, thread },
        _ => Act::Signal { number, origin, thread },
    }
}

/// The tampering a signal record reports, if it is one: a signal sent by a process, not one
/// the kernel raised in whatever task ran (timers, I/O readiness, a child's exit).
pub fn judge(event: &SignalEvent) -> Option<Tampering> {
    let origin = match event.code {
        SI_USER => Origin::Kill,
        SI_TKILL => Origin::Tkill,
        SI_QUEUE => Origin::Sigqueue,
        SI_KERNEL => Origin::Kernel,
        _ => return None,
    };
    let actor = Actor { pid: event.header.pid, uid: Some(event.header.uid) };
    let act = if event.in_ptrace != 0 && event.signal == libc::SIGSTOP as u32 {
        Act::Traced { thread: event.target_tid }
    } else {
        act(event.signal, origin, event.target_tid)
    };
    Some(Tampering { actor: Some(actor), act })
}

/// The signal's name (`SIGUSR1`), or `SIG` and its number.
pub fn name(number: u32) -> &'static str {
    const NAMES: [&str; 32] = [
        "SIG0",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(number).ok().and_then(|n| NAMES.get(n)).copied().unwrap_or("SIGRT")
}

/// A record of signal `number` from process 77 (user 1000) to the agent's thread 5, as the
/// kernel writes it.
#[cfg(test)]
pub fn record(number: i32, code: i32, in_ptrace: u32) -> SignalEvent {
    use sensor_common::{EventHeader, EventKind};
    SignalEvent {
        header: EventHeader { kind: EventKind::Signal as u32, pid: 77, uid: 1000, _pad: 0, ktime_ns: 1 },
        signal: number.cast_unsigned(),
        code,
        target_tid: 5,
        sender_tid: 78,
        result: 0,
        in_ptrace,
    }
}

#[cfg(test)]
mod tests {
    use super::{record as signal, *};

    #[test]
    fn a_kill_names_its_sender_and_a_stop_is_the_agents_stop() {
        let usr1 = judge(&signal(libc::SIGUSR1, SI_USER, 0)).unwrap();
        assert_eq!(usr1.actor, Some(Actor { pid: 77, uid: Some(1000) }));
        assert_eq!(usr1.act, Act::Signal { number: 10, origin: Origin::Kill, thread: 5 });
        let term = judge(&signal(libc::SIGTERM, SI_TKILL, 0)).unwrap();
        assert!(matches!(term.act, Act::StopSignal { origin: Origin::Tkill, .. }), "{term:?}");
        let hup = judge(&signal(libc::SIGHUP, SI_QUEUE, 0)).unwrap();
        assert!(matches!(hup.act, Act::ReloadSignal { origin: Origin::Sigqueue, .. }), "{hup:?}");
        assert_eq!((name(10), name(19), name(40)), ("SIGUSR1", "SIGSTOP", "SIGRT"));
    }

    #[test]
    fn a_ptrace_attach_is_a_tracer_and_kernel_raised_signals_are_nobodys_act() {
        const CLD_EXITED: i32 = 1;
        const SI_TIMER: i32 = -2;
        let attach = judge(&signal(libc::SIGSTOP, SI_KERNEL, 1)).unwrap();
        assert_eq!(attach.act, Act::Traced { thread: 5 });
        assert_eq!(judge(&signal(libc::SIGCHLD, CLD_EXITED, 0)), None);
        assert_eq!(judge(&signal(libc::SIGALRM, SI_TIMER, 0)), None);
    }
}
