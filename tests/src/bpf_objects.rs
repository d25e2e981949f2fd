//! The BPF programs, links and maps a process holds, and whether the kernel still lists them.
//!
//! What a process holds comes from its `/proc/PID/fdinfo`, which the kernel fills for every BPF
//! fd; what is loaded comes from `bpftool -j`. (Debian's bpftool is built without skeletons, so
//! its `prog show` has no `pids` field.) Ids are allocated cyclically, so a freed object's id is
//! not reused by a sensor another test starts meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

/// Ids of BPF objects, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BpfObjects {
    /// Program ids.
    pub programs: BTreeSet<u32>,
    /// Link ids (a link keeps its program attached).
    pub links: BTreeSet<u32>,
    /// Map ids.
    pub maps: BTreeSet<u32>,
}

impl BpfObjects {
    /// Whether there are none of any kind.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.programs.is_empty() && self.links.is_empty() && self.maps.is_empty()
    }
}

/// The objects `pid` holds an fd for, read from `/proc/PID/fd` and `/proc/PID/fdinfo`.
///
/// # Errors
/// When the process is gone or its fds cannot be read (needs root for another user's process).
pub fn held_by(pid: u32) -> Result<BpfObjects> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let mut held = BpfObjects::default();
    for entry in fs::read_dir(proc.join("fd")).with_context(|| format!("list the fds of {pid}"))? {
        let fd = entry?.file_name();
        // An fd closed since the listing is simply not held any more.
        let Ok(target) = fs::read_link(proc.join("fd").join(&fd)) else { continue };
        let Ok(info) = fs::read_to_string(proc.join("fdinfo").join(&fd)) else { continue };
        let (set, key) = match target.to_string_lossy().as_ref() {
            "anon_inode:bpf-prog" => (&mut held.programs, "prog_id"),
            "anon_inode:bpf_link" => (&mut held.links, "link_id"),
            "anon_inode:bpf-map" => (&mut held.maps, "map_id"),
            _ => continue,
        };
        set.insert(fdinfo_field(&info, key).with_context(|| format!("no {key} in fdinfo: {info}"))?);
    }
    Ok(held)
}

/// Every loaded program, id → name.
///
/// # Errors
/// When bpftool fails or prints something else than its list.
pub fn loaded_programs() -> Result<BTreeMap<u32, String>> {
    let list = bpftool(&["prog", "show"])?;
    let name = |p: &Value| p.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
    let entry = |p: &Value| Ok((id_of(p).with_context(|| format!("no id in {p}"))?, name(p)));
    listed(&list)?.iter().map(entry).collect()
}

/// Which of `objects` the kernel still lists.
///
/// # Errors
/// When bpftool fails or prints something else than its lists.
pub fn still_loaded(objects: &BpfObjects) -> Result<BpfObjects> {
    let programs = loaded_programs()?.into_keys().collect();
    let links = ids(&bpftool(&["link", "show"])?)?;
    let maps = ids(&bpftool(&["map", "show"])?)?;
    Ok(BpfObjects {
        programs: objects.programs.intersection(&programs).copied().collect(),
        links: objects.links.intersection(&links).copied().collect(),
        maps: objects.maps.intersection(&maps).copied().collect(),
    })
}

/// Polls until none of `objects` is loaded or `timeout` passes; returns what is still loaded.
/// The kernel frees programs and maps asynchronously after the last reference goes.
///
/// # Errors
/// See [`still_loaded`].
pub fn wait_for_release(objects: &BpfObjects, timeout: Duration) -> Result<BpfObjects> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = still_loaded(objects)?;
        if left.is_empty() || Instant::now() >= deadline {
            return Ok(left);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The ids of the programs attached to the cgroup at `path`.
///
/// # Errors
/// When bpftool fails, e.g. because `path` is not a cgroup v2 directory.
pub fn attached_to_cgroup(path: &Path) -> Result<BTreeSet<u32>> {
    let path = path.to_str().context("cgroup path is not UTF-8")?;
    ids(&bpftool(&["cgroup", "show", path])?)
}

/// Where cgroup v2 is mounted, from `/proc/self/mounts` (the first such mount).
///
/// # Errors
/// When no cgroup2 file system is mounted.
pub fn cgroup2_mount() -> Result<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").context("read /proc/self/mounts")?;
    cgroup2_in(&mounts).context("no cgroup2 file system in /proc/self/mounts")
}

fn cgroup2_in(mounts: &str) -> Option<PathBuf> {
    mounts.lines().map(|line| line.split(' ').collect::<Vec<_>>()).find_map(|fields| match fields[..] {
        [_, target, "cgroup2", ..] => Some(PathBuf::from(target.replace("\\040", " "))),
        _ => None,
    })
}

/// Whether the map named `name` that process `holder` holds has the 4-byte key `key` (a pid,
/// say), from `bpftool map dump`.
///
/// # Errors
/// When `holder` holds no such map, or bpftool fails.
pub fn map_has_u32_key(holder: u32, name: &str, key: u32) -> Result<bool> {
    let bytes: Vec<Value> = key.to_ne_bytes().iter().map(|b| Value::from(format!("0x{b:02x}"))).collect();
    let (as_bytes, as_number) = (Value::Array(bytes), Value::from(key));
    // Without BTF the key is a list of hex bytes; with it, a number.
    Ok(map_keys(map_id(holder, name)?)?.iter().any(|k| *k == as_bytes || *k == as_number))
}

/// The id of the map named `name` (as the kernel keeps it: 15 characters at most) that
/// process `holder` holds.
///
/// # Errors
/// When `holder` holds no such map, or bpftool fails.
pub fn map_id(holder: u32, name: &str) -> Result<u32> {
    for id in held_by(holder)?.maps {
        let shown = bpftool(&["map", "show", "id", &id.to_string()])?;
        if shown.get("name").and_then(Value::as_str) == Some(name) {
            return Ok(id);
        }
    }
    bail!("process {holder} holds no map named {name}")
}

/// The keys of map `id` now, as `bpftool map dump` shows them.
///
/// # Errors
/// When bpftool fails.
pub fn map_keys(id: u32) -> Result<Vec<Value>> {
    let entries = bpftool(&["map", "dump", "id", &id.to_string()])?;
    Ok(listed(&entries)?.iter().filter_map(|entry| entry.get("key").cloned()).collect())
}

/// The ids of the links of type `link_type` (`cgroup`, `raw_tracepoint`, `perf`) that process
/// `holder` holds, from its fdinfo.
///
/// # Errors
/// When its fds cannot be read.
pub fn links_of_type(holder: u32, link_type: &str) -> Result<BTreeSet<u32>> {
    let proc = PathBuf::from(format!("/proc/{holder}"));
    let mut links = BTreeSet::new();
    for entry in fs::read_dir(proc.join("fdinfo")).with_context(|| format!("list the fds of {holder}"))? {
        let Ok(info) = fs::read_to_string(entry?.path()) else { continue };
        let typed = info.lines().any(|l| l.strip_prefix("link_type:").is_some_and(|t| t.trim() == link_type));
        links.extend(fdinfo_field(&info, "link_id").filter(|_| typed));
    }
    Ok(links)
}

/// `bpftool -j ARGS`, a list command, parsed; bpftool reports failures as `{"error": …}`.
fn bpftool(args: &[&str]) -> Result<Value> {
    let output = Command::new("bpftool")
        .arg("-j")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("run bpftool (`cargo xtask bootstrap` installs it)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    // `cgroup show` prints nothing at all, not `[]`, when no program is attached.
    let text = if stdout.trim().is_empty() { "[]" } else { &stdout };
    let json: Value =
        serde_json::from_str(text).with_context(|| format!("bpftool {args:?} printed {stdout:?}"))?;
    if let Some(error) = json.get("error") {
        bail!("bpftool {args:?} failed: {error}");
    }
    ensure!(output.status.success(), "bpftool {args:?} failed ({}): {stdout}", output.status);
    Ok(json)
}

fn listed(list: &Value) -> Result<&Vec<Value>> {
    list.as_array().with_context(|| format!("expected a list from bpftool, got {list}"))
}

fn ids(list: &Value) -> Result<BTreeSet<u32>> {
    listed(list)?.iter().map(|item| id_of(item).with_context(|| format!("no id in {item}"))).collect()
}

fn id_of(item: &Value) -> Option<u32> {
    u32::try_from(item.get("id")?.as_u64()?).ok()
}

/// The number after `key:` in an fdinfo text (`prog_id:\t431`).
fn fdinfo_field(info: &str, key: &str) -> Option<u32> {
    info.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(':')?.trim().parse().ok())
}

/// The tracepoints `pid`'s programs are attached to now (raw, BTF-typed and classic alike),
/// from `bpftool perf`.
///
/// # Errors
/// When bpftool fails or prints something else than its JSON list.
pub fn attached_tracepoints(pid: u32) -> Result<BTreeSet<String>> {
    let output = Command::new("bpftool").args(["perf", "list", "-j"]).stderr(Stdio::inherit()).output()?;
    ensure!(output.status.success(), "bpftool perf list failed: {}", output.status);
    let entries: Vec<Value> = serde_json::from_slice(&output.stdout).context("bpftool perf list -j")?;
    Ok(entries
        .iter()
        .filter(|e| e.get("pid").and_then(Value::as_u64) == Some(u64::from(pid)))
        .filter_map(|e| e.get("tracepoint").and_then(Value::as_str).map(str::to_owned))
        .collect())
}

/// Whether `tracepoint` is one of the syscall tracepoints (raw `sys_enter`/`sys_exit` or a
/// per-syscall one): any of them puts every task's syscalls on the slow path.
#[must_use]
pub fn is_syscall_tracepoint(tracepoint: &str) -> bool {
    tracepoint == "sys_enter"
        || tracepoint == "sys_exit"
        || tracepoint.starts_with("sys_enter_")
        || tracepoint.starts_with("sys_exit_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_fdinfo_fields() {
        let link = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1060\nlink_type:\tcgroup\nlink_id:\t365\nprog_tag:\t0cc5e102245d4aff\nprog_id:\t436\n";
        assert_eq!(fdinfo_field(link, "link_id"), Some(365));
        assert_eq!(fdinfo_field(link, "prog_id"), Some(436));
        assert_eq!(fdinfo_field(link, "map_id"), None);
    }

    #[test]
    fn reads_bpftool_lists() {
        let cgroup = json!([{"id": 438, "attach_type": "cgroup_inet4_connect", "name": "udp_connect4"}]);
        assert_eq!(ids(&cgroup).unwrap(), BTreeSet::from([438]));
        assert!(ids(&json!([{"name": "no id"}])).is_err());
        assert!(ids(&json!({"error": "x"})).is_err());
    }

    #[test]
    fn finds_the_cgroup2_mount() {
        let mounts = "proc /proc proc rw 0 0\ncgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";
        assert_eq!(cgroup2_in(mounts), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(cgroup2_in("proc /proc proc rw 0 0\n"), None);
    }
}
