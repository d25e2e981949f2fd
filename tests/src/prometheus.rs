//! Prometheus from Debian, started by a test on a loopback port with its own configuration and
//! data directory, scraping one target every second; asked through its query API.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::host_tools::KilledOnDrop;

/// How long Prometheus may take to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two questions to the query API while waiting for an answer.
const POLL: Duration = Duration::from_millis(250);

/// A running Prometheus; killed when dropped.
#[derive(Debug)]
pub struct Prometheus {
    _process: KilledOnDrop,
    web: SocketAddr,
}

impl Prometheus {
    /// Starts `prometheus` scraping `http://TARGET/metrics` every second, its configuration and
    /// data under `dir`, its web interface on a free loopback port.
    ///
    /// # Errors
    /// When it cannot start or is not ready within 30 s.
    pub fn start(dir: &Path, target: SocketAddr) -> Result<Self> {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: vigie\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )?;
        let web = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), free_loopback_port()?);
        let process = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={web}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start prometheus (Debian package prometheus; `cargo xtask test` installs it)")?;
        let prometheus = Self { _process: KilledOnDrop(process), web };
        let deadline = Instant::now() + READY_TIMEOUT;
        while get(&format!("http://{web}/-/ready")).is_err() {
            if Instant::now() > deadline {
                bail!("prometheus on {web} not ready within {READY_TIMEOUT:?}");
            }
            std::thread::sleep(POLL);
        }
        Ok(prometheus)
    }

    /// The result vector of the instant query `expr` (`/api/v1/query`).
    ///
    /// # Errors
    /// When the API cannot be reached or answers no success.
    pub fn query(&self, expr: &str) -> Result<Vec<Value>> {
        let url = format!("http://{}/api/v1/query", self.web);
        let answer =
            run_curl(&["-sS", "--max-time", "5", "-G", &url, "--data-urlencode", &format!("query={expr}")])?;
        let answer: Value =
            serde_json::from_str(&answer).with_context(|| format!("query {expr}: {answer}"))?;
        if answer["status"] != "success" {
            bail!("query {expr}: {answer}");
        }
        Ok(answer["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// Asks `expr` until its result vector satisfies `done`, or `timeout` passes; the last
    /// result either way.
    ///
    /// # Errors
    /// When the API fails.
    pub fn query_until(
        &self,
        expr: &str,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Result<Vec<Value>> {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self.query(expr)?;
            if done(&result) || Instant::now() > deadline {
                return Ok(result);
            }
            std::thread::sleep(POLL);
        }
    }
}

/// The value of one sample of a query result (`[time, "value"]`).
#[must_use]
pub fn sample_value(sample: &Value) -> Option<f64> {
    sample["value"][1].as_str()?.parse().ok()
}

/// A loopback port free now (bound, then released).
///
/// # Errors
/// When no port can be bound.
pub fn free_loopback_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// `GET url` with curl: the body of a 2xx answer.
///
/// # Errors
/// When curl fails or the answer is not 2xx.
pub fn get(url: &str) -> Result<String> {
    run_curl(&["-sS", "--fail", "--max-time", "5", url])
}

fn run_curl(args: &[&str]) -> Result<String> {
    let output = Command::new("curl").args(args).stdin(Stdio::null()).output().context("run curl")?;
    if !output.status.success() {
        bail!("curl {args:?}: {} {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
