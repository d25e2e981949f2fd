//! Ring-buffer bytes → typed kernel events. Kernel data is never trusted to be well formed:
//! a short or unknown record is an error value, not a panic.

use std::mem::size_of;

use sensor_common::{
    ConnectEvent, DerivedEvent, EventHeader, EventKind, ExecEvent, ExitEvent, FileId, ForkEvent, SignalEvent,
    Taint, TaintEvent,
};

pub use super::outbound::Outbound;

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelEvent {
    Exec(Exec),
    Fork(ForkEvent),
    Exit(ExitEvent),
    Taint(TaintEvent),
    /// A secret opened by a process that may open it: the record of who reads it, no taint.
    AllowedRead(TaintEvent),
    Connect(ConnectEvent),
    Derived(Derived),
    Outbound(Outbound),
    /// A signal another process aimed at the agent.
    Signal(SignalEvent),
}

impl KernelEvent {
    /// The taint the record carries, if any.
    pub fn taint_mut(&mut self) -> Option<&mut Taint> {
        match self {
            Self::Taint(event) | Self::AllowedRead(event) => Some(&mut event.taint),
            Self::Connect(event) => Some(&mut event.taint),
            Self::Derived(derived) => Some(&mut derived.taint),
            Self::Outbound(Outbound::Bytes(bytes)) => Some(&mut bytes.taint),
            Self::Exec(_)
            | Self::Fork(_)
            | Self::Exit(_)
            | Self::Signal(_)
            | Self::Outbound(Outbound::TlsDestination { .. }) => None,
        }
    }
}

/// A derived-file record with its name decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derived {
    pub header: EventHeader,
    pub taint: Taint,
    pub fd: u32,
    /// Path within the file's mount (`/x` for `/tmp/x` when `/tmp` is its own mount).
    pub mount_path: String,
}

/// An exec with its strings decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    pub header: EventHeader,
    pub ppid: u32,
    pub start_ns: u64,
    pub self_exec_id: u64,
    /// The kernel's identity of the executable.
    pub exe: FileId,
    pub filename: String,
    pub args: Vec<String>,
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record is shorter than its kind requires.
    #[error("record of {len} bytes is too short for {kind}")]
    TooShort { kind: &'static str, len: usize },
    /// The header names no known kind.
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    /// A field of the record holds a value no kernel program writes.
    #[error("{kind} record has an unknown {field}")]
    Field { kind: &'static str, field: &'static str },
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<KernelEvent, DecodeError> {
    let header: EventHeader = read(bytes, "header")?;
    match EventKind::from_raw(header.kind) {
        Some(EventKind::Exec) => Ok(KernelEvent::Exec(exec(&read::<ExecEvent>(bytes, "exec")?))),
        Some(EventKind::Fork) => read(bytes, "fork").map(KernelEvent::Fork),
        Some(EventKind::Exit) => read(bytes, "exit").map(KernelEvent::Exit),
        Some(EventKind::Taint) => read(bytes, "taint").map(KernelEvent::Taint),
        Some(EventKind::AllowedRead) => read(bytes, "allowed read").map(KernelEvent::AllowedRead),
        Some(EventKind::Connect) => read(bytes, "connect").map(KernelEvent::Connect),
        Some(EventKind::Derived) => Ok(KernelEvent::Derived(derived(&read(bytes, "derived")?))),
        Some(EventKind::Outbound) => super::outbound::decode(bytes).map(KernelEvent::Outbound),
        Some(EventKind::Signal) => read(bytes, "signal").map(KernelEvent::Signal),
        None => Err(DecodeError::UnknownKind(header.kind)),
    }
}

/// Copies a `T` out of the front of `bytes`.
pub(super) fn read<T: Copy>(bytes: &[u8], kind: &'static str) -> Result<T, DecodeError> {
    if bytes.len() < size_of::<T>() {
        return Err(DecodeError::TooShort { kind, len: bytes.len() });
    }
    // SAFETY: length checked; `T` is a `#[repr(C)]` plain-integer record from sensor-common,
    // valid for any bit pattern; read_unaligned needs no alignment.
    Ok(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

fn exec(raw: &ExecEvent) -> Exec {
    let filename_len = (raw.filename_len as usize).min(raw.filename.len());
    let args_len = (raw.args_len as usize).min(raw.args.len());
    Exec {
        header: raw.header,
        ppid: raw.ppid,
        start_ns: raw.start_ns,
        self_exec_id: raw.exec_id,
        exe: raw.exe,
        filename: c_string(&raw.filename[..filename_len]),
        args: split_args(&raw.args[..args_len]),
    }
}

fn derived(raw: &DerivedEvent) -> Derived {
    let mut mount_path = String::new();
    for part in raw.name_parts.iter().map(|p| c_string(p)).take_while(|p| !p.is_empty() && p != "/") {
        mount_path.insert_str(0, &part);
        mount_path.insert(0, '/');
    }
    Derived { header: raw.header, taint: raw.taint, fd: raw.fd, mount_path }
}

/// Text up to the first NUL.
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// NUL-separated arguments, as in `/proc/PID/cmdline`.
pub fn split_args(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

#[cfg(test)]
mod tests {
    use sensor_common::{family, transport, via, FileId, ARGS_MAX, FILENAME_MAX, NAME_PARTS, NAME_PART_MAX};

    use super::*;

    fn header(kind: EventKind) -> EventHeader {
        EventHeader { kind: kind as u32, pid: 42, uid: 1000, _pad: 0, ktime_ns: 123_456 }
    }

    /// The bytes of a record, as the kernel writes them.
    fn bytes_of<T>(record: &T) -> Vec<u8> {
        // SAFETY: records are `#[repr(C)]` with explicit padding, so every byte is initialised.
        unsafe { std::slice::from_raw_parts(std::ptr::from_ref(record).cast::<u8>(), size_of::<T>()) }
            .to_vec()
    }

    #[test]
    fn fork_exit_taint_derived_connect_and_signal_round_trip() {
        let fork = ForkEvent {
            header: header(EventKind::Fork),
            child_pid: 43,
            _pad: 0,
            child_start_ns: 9,
            child_exec_id: 2,
        };
        assert_eq!(decode(&bytes_of(&fork)), Ok(KernelEvent::Fork(fork)));

        let exit = ExitEvent { header: header(EventKind::Exit) };
        assert_eq!(decode(&bytes_of(&exit)), Ok(KernelEvent::Exit(exit)));

        let taint = Taint {
            secret_id: 3,
            origin_pid: 41,
            read_ns: 100,
            acquired_ns: 200,
            via_kind: via::PIPE,
            via_generation: 0,
            via: FileId::new(0xd, 9_000),
            origin_start_ns: 7,
        };
        let read = TaintEvent {
            header: header(EventKind::Taint),
            taint,
            fd: 0,
            _pad: 0,
            file: FileId::new(0xd, 9_000),
        };
        assert_eq!(decode(&bytes_of(&read)), Ok(KernelEvent::Taint(read)));

        let mut derived = DerivedEvent {
            header: header(EventKind::Derived),
            taint,
            fd: 4,
            _pad: 0,
            name_parts: [[0; NAME_PART_MAX]; NAME_PARTS],
        };
        for (part, name) in derived.name_parts.iter_mut().zip(["x.gz", "exfil", "/"]) {
            part[..name.len()].copy_from_slice(name.as_bytes());
        }
        let expected = Derived { header: derived.header, taint, fd: 4, mount_path: "/exfil/x.gz".into() };
        assert_eq!(decode(&bytes_of(&derived)), Ok(KernelEvent::Derived(expected)));

        let connect = ConnectEvent {
            header: header(EventKind::Connect),
            taint,
            family: family::INET6,
            port: 8448,
            transport: transport::TCP,
            _pad: [0; 3],
            addr: [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            bytes: 16_384,
        };
        assert_eq!(decode(&bytes_of(&connect)), Ok(KernelEvent::Connect(connect)));

        let signal = SignalEvent {
            header: header(EventKind::Signal),
            signal: 10,
            code: 0,
            target_tid: 7,
            sender_tid: 42,
            result: 0,
            in_ptrace: 0,
        };
        assert_eq!(decode(&bytes_of(&signal)), Ok(KernelEvent::Signal(signal)));
    }

    #[test]
    fn exec_strings_are_cut_at_their_lengths() {
        let mut raw = ExecEvent {
            header: header(EventKind::Exec),
            ppid: 1,
            filename_len: 0,
            args_len: 0,
            _pad: 0,
            start_ns: 5,
            exec_id: 1,
            exe: FileId::default(),
            filename: [0xff; FILENAME_MAX],
            args: [0xff; ARGS_MAX],
        };
        let filename = b"/usr/bin/curl\0";
        raw.filename[..filename.len()].copy_from_slice(filename);
        raw.filename_len = u32::try_from(filename.len()).unwrap();
        let args = b"curl\0--data-binary\0@x\0";
        raw.args[..args.len()].copy_from_slice(args);
        raw.args_len = u32::try_from(args.len()).unwrap();

        let KernelEvent::Exec(exec) = decode(&bytes_of(&raw)).unwrap() else { panic!("not an exec") };
        assert_eq!(exec.filename, "/usr/bin/curl");
        assert_eq!(exec.args, ["curl", "--data-binary", "@x"]);
        assert_eq!((exec.ppid, exec.start_ns, exec.header.pid), (1, 5, 42));
    }

    #[test]
    fn lengths_beyond_the_arrays_are_clamped() {
        let mut raw = ExecEvent {
            header: header(EventKind::Exec),
            ppid: 1,
            filename_len: u32::MAX,
            args_len: u32::MAX,
            _pad: 0,
            start_ns: 0,
            exec_id: 1,
            exe: FileId::default(),
            filename: [b'a'; FILENAME_MAX],
            args: [b'b'; ARGS_MAX],
        };
        raw.args[ARGS_MAX - 1] = b'c';
        let KernelEvent::Exec(exec) = decode(&bytes_of(&raw)).unwrap() else { panic!("not an exec") };
        assert_eq!(exec.filename.len(), FILENAME_MAX);
        assert_eq!(exec.args.len(), 1);
    }

    #[test]
    fn short_and_unknown_records_are_errors() {
        let exit = ExitEvent { header: header(EventKind::Exit) };
        let bytes = bytes_of(&exit);
        assert_eq!(decode(&bytes[..8]), Err(DecodeError::TooShort { kind: "header", len: 8 }));
        let fork_header = bytes_of(&header(EventKind::Fork));
        assert_eq!(decode(&fork_header), Err(DecodeError::TooShort { kind: "fork", len: fork_header.len() }));
        let mut unknown = exit;
        unknown.header.kind = 99;
        assert_eq!(decode(&bytes_of(&unknown)), Err(DecodeError::UnknownKind(99)));
    }
}
