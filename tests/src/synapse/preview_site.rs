//! A web site on the test's namespace host, for the homeserver to preview: Python's
//! `http.server` run inside the namespace, serving pages with an `og:title`.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::line_reader::spawn_line_reader;
use crate::RemoteHost;

/// The site's port on the namespace host (the actor's listener has its own).
const PORT: u16 = 8080;
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// `index.html`'s title: what a preview of the site shows.
pub const INDEX_TITLE: &str = "Vigie preview";
/// `known-gap.html`'s title.
pub const KNOWN_GAP_TITLE: &str = "Vigie known gap";

/// The site; dropping it stops the server.
#[derive(Debug)]
pub struct PreviewSite {
    child: Child,
    addr: SocketAddr,
}

impl PreviewSite {
    /// Writes the pages under `dir` and serves them from `remote` with `python`.
    ///
    /// # Errors
    /// When the server does not say it is serving within a few seconds.
    pub fn start(python: &Path, remote: &RemoteHost, dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir)?;
        for (page, title) in [("index.html", INDEX_TITLE), ("known-gap.html", KNOWN_GAP_TITLE)] {
            let html = format!(
                "<html><head><title>{title}</title><meta property=\"og:title\" content=\"{title}\">\
                 </head><body>{title}</body></html>\n"
            );
            fs::write(dir.join(page), html)?;
        }
        let addr = SocketAddr::from((remote.ipv4(), PORT));
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", remote.namespace()])
            .arg(python)
            .args(["-u", "-m", "http.server", &PORT.to_string(), "--bind", &remote.ipv4().to_string()])
            .arg("--directory")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // Its access log would show the URLs fetched, secrets included in scenario 6.
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn().context("start http.server in the namespace")?;
        let stdout = child.stdout.take().context("http.server stdout")?;
        let site = Self { child, addr };
        let (lines, _reader) = spawn_line_reader(stdout);
        match lines.recv_timeout(READY_TIMEOUT) {
            Ok(line) if line.starts_with("Serving HTTP") => Ok(site),
            Ok(line) => bail!("http.server said {line:?}"),
            Err(RecvTimeoutError::Timeout) => bail!("http.server not serving after {READY_TIMEOUT:?}"),
            Err(RecvTimeoutError::Disconnected) => bail!("http.server exited"),
        }
    }

    /// `http://HOST:PORT/PAGE`.
    #[must_use]
    pub fn url(&self, page: &str) -> String {
        format!("http://{}/{page}", self.addr)
    }
}

impl Drop for PreviewSite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
