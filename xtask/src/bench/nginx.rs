//! Workload 8, what a homeserver's neighbour feels: nginx (Debian's `nginx-light`) serving
//! 2 KiB static files from a folder of the bench's own to `wrk` on 127.0.0.1, nginx and wrk
//! pinned to different CPUs; the figure is requests per second.
//!
//! nginx runs on a private config (its own pid file and error log, no access log, one
//! worker, `daemon off` so the bench holds the master), never the system's `/etc/nginx`, on a
//! free port of loopback. It is started afresh inside each arm, after the sensor or auditd is
//! up, and stopped before the arm goes on: audit gives a task its context at fork, so a
//! server started before auditd would not be audited at all.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::child::Guarded;
use super::load::{field, parse};
use super::say;
use super::tls::Certificate;
use crate::command::tool;

/// Files served, requested in turn, each [`FILE_BYTES`] long.
const FILES: usize = 16;
const FILE_BYTES: usize = 2048;
/// wrk: one thread, a few keep-alive connections.
const WRK_THREADS: &str = "1";
const WRK_CONNECTIONS: &str = "16";
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// wrk stops itself after its duration; this is how much longer it may take.
const WRK_SLACK: Duration = Duration::from_secs(15);

/// wrk's request loop walks the files; at the end it prints its counters as one JSON line.
const WRK_SCRIPT: &str = r#"local n = 0
request = function()
  n = n % FILES + 1
  return wrk.format("GET", "/f" .. n .. ".html")
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d}\n', summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"#;

/// The folder nginx serves from and keeps its state in; removed on drop.
pub struct Site {
    dir: PathBuf,
    /// Served over HTTPS by workload 11, and to workload 10's TLS server.
    certificate: Certificate,
    /// (nginx's CPU, wrk's CPU); `None` on a machine with one CPU.
    cpus: Option<(u32, u32)>,
}

impl Site {
    pub fn create() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("vigie-bench-nginx-{}", std::process::id()));
        fs::create_dir_all(dir.join("www")).with_context(|| format!("cannot create {}", dir.display()))?;
        let certificate = Certificate::create(&dir)?;
        // From here on, an early return drops `site`, which removes the folder.
        let site = Self { cpus: two_cpus(), dir, certificate };
        // nginx's worker drops root: it must be able to read what it serves.
        for dir in [&site.dir, &site.dir.join("www")] {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        }
        for i in 1..=FILES {
            let page = page(i);
            write(&site.dir.join("www").join(format!("f{i}.html")), page.as_bytes())?;
        }
        write(&site.dir.join("wrk.lua"), WRK_SCRIPT.replace("FILES", &FILES.to_string()).as_bytes())?;
        match site.cpus {
            Some((server, client)) => say(&format!(
                "nginx site in {}: nginx on CPU {server}, wrk on CPU {client}",
                site.dir.display()
            )),
            None => say("nginx site: fewer than two CPUs, nginx and wrk not pinned"),
        }
        Ok(site)
    }

    /// The site's self-signed certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// One run: nginx started, checked, loaded by wrk for `time` over HTTP, or HTTPS if
    /// `tls`, stopped. Requests per second.
    pub fn requests_per_second(&self, time: Duration, tls: bool) -> Result<f64> {
        let port = free_port()?;
        let conf = self.dir.join("nginx.conf");
        write(&conf, config(&self.dir, port, tls.then_some(&self.certificate)).as_bytes())?;
        let error_log = self.dir.join("error.log");
        let mut nginx = pinned(self.cpus.map(|(server, _)| server), "nginx")?;
        nginx.arg("-p").arg(&self.dir).arg("-c").arg(&conf).arg("-e").arg(&error_log);
        let server =
            Guarded::spawn("nginx", nginx.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()))?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        wait_until_serving(&server, addr, tls)
            .with_context(|| format!("nginx on {addr} did not serve; its log says: {}", tail(&error_log)))?;

        let seconds = time.as_secs().max(1);
        let mut wrk = pinned(self.cpus.map(|(_, client)| client), "wrk")?;
        wrk.args(["-t", WRK_THREADS, "-c", WRK_CONNECTIONS, "-d", &format!("{seconds}s"), "-s"])
            .arg(self.dir.join("wrk.lua"))
            .arg(format!("{}://{addr}/", if tls { "https" } else { "http" }));
        let client =
            Guarded::spawn("wrk", wrk.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()))?;
        let result = parse(&client.finish(Duration::from_secs(seconds) + WRK_SLACK)?)?;
        server.stop()?;

        let (requests, duration_us) = (field(&result, "requests")?, field(&result, "duration_us")?);
        if requests == 0 || field(&result, "status_errors")? > 0 || field(&result, "connect_errors")? > 0 {
            bail!("wrk against nginx: {result}");
        }
        #[expect(clippy::cast_precision_loss, reason = "counts of one run are far below 2^52")]
        Ok(requests as f64 / (duration_us.max(1) as f64 / 1e6))
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Err(error) = fs::remove_dir_all(&self.dir) {
            eprintln!("[bench] cannot remove {}: {error}", self.dir.display());
        }
    }
}

/// `program`, through `taskset -c CPU` when there is a CPU to pin it to.
fn pinned(cpu: Option<u32>, program: &str) -> Result<Command> {
    let Some(cpu) = cpu else { return tool(program) };
    let mut taskset = tool("taskset")?;
    taskset.args(["-c", &cpu.to_string(), program]);
    Ok(taskset)
}

/// nginx's whole configuration: everything it writes stays under `dir`; TLS with
/// `certificate` if given.
fn config(dir: &Path, port: u16, certificate: Option<&Certificate>) -> String {
    let dir = dir.display();
    let mut conf = format!(
        "worker_processes 1;\ndaemon off;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\n\
         events {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n  default_type text/html;\n"
    );
    for temp in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        let _ = writeln!(conf, "  {temp}_temp_path {dir}/{temp}_temp;");
    }
    let tls = certificate.map_or(String::new(), |c| {
        format!(
            " ssl;\n    ssl_certificate {};\n    ssl_certificate_key {}",
            c.cert.display(),
            c.key.display()
        )
    });
    let _ = write!(conf, "  server {{\n    listen 127.0.0.1:{port}{tls};\n    root {dir}/www;\n  }}\n}}\n");
    conf
}

/// A page of exactly [`FILE_BYTES`] bytes.
fn page(i: usize) -> String {
    let mut page = format!("<!doctype html><title>page {i}</title><p>");
    let body = "All work and no play makes a homeserver's neighbour a dull web server. ";
    while page.len() < FILE_BYTES - 1 {
        page.push_str(body);
    }
    page.truncate(FILE_BYTES - 1);
    page.push('\n');
    page
}

/// Until a GET of the first file answers 200 with the whole file (the worker is serving);
/// over TLS, until the port accepts connections.
fn wait_until_serving(server: &Guarded, addr: SocketAddr, tls: bool) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if server.exited() {
            bail!("nginx exited");
        }
        let serving = if tls {
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
        } else {
            get_first_file(addr)
                .is_ok_and(|answer| answer.starts_with("HTTP/1.1 200") && answer.len() > FILE_BYTES)
        };
        if serving {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("no answer within {READY_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn get_first_file(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"GET /f1.html HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// A port of 127.0.0.1 that nothing listens on now.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The first two CPUs this process may run on (`Cpus_allowed_list`, e.g. `0-1` or `0,2-3`).
fn two_cpus() -> Option<(u32, u32)> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let list = status.lines().find_map(|line| line.strip_prefix("Cpus_allowed_list:"))?;
    let cpus = cpu_list(list);
    Some((*cpus.first()?, *cpus.get(1)?))
}

fn cpu_list(list: &str) -> Vec<u32> {
    let mut cpus = Vec::new();
    for part in list.trim().split(',') {
        let mut bounds = part.splitn(2, '-').map(|n| n.trim().parse::<u32>());
        match (bounds.next(), bounds.next()) {
            (Some(Ok(first)), Some(Ok(last))) => cpus.extend(first..=last),
            (Some(Ok(cpu)), None) => cpus.push(cpu),
            _ => {}
        }
    }
    cpus
}

/// The last lines of nginx's error log, for an error message.
fn tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(5)..].join(" / ");
    if tail.is_empty() {
        "nothing".to_owned()
    } else {
        tail
    }
}

/// Writes a file anyone may read.
fn write(path: &Path, contents: &[u8]) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{config, cpu_list, page, FILE_BYTES};

    #[test]
    fn reads_cpu_lists() {
        assert_eq!(cpu_list("0-1\n"), [0, 1]);
        assert_eq!(cpu_list("0,2-3,7"), [0, 2, 3, 7]);
        assert!(cpu_list("").is_empty());
    }

    #[test]
    fn the_config_is_private_and_quiet() {
        let conf = config(Path::new("/tmp/site"), 8123, None);
        for line in ["daemon off;", "worker_processes 1;", "pid /tmp/site/nginx.pid;", "access_log off;"] {
            assert!(conf.contains(line), "{line} missing from\n{conf}");
        }
        assert!(conf.contains("listen 127.0.0.1:8123;"));
        assert!(!conf.contains("/etc/nginx") && !conf.contains("/var/"));
        assert_eq!(conf.matches('{').count(), conf.matches('}').count());
    }

    #[test]
    fn pages_are_two_kib() {
        assert_eq!(page(1).len(), FILE_BYTES);
        assert_eq!(page(16).len(), FILE_BYTES);
    }
}
