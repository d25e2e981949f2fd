//! Opens and reads of secrets on tmpfs, which fanotify holds in the kernel until the agent has
//! tainted the reader (`kernel::tmpfs`): the taint is in place before the reader can send.

use sensor_common::{via, FileId, Taint};
use tokio::io::unix::AsyncFd;

use crate::{
    catch_up::taint_in_kernel,
    error::Error,
    format::ecs::{Document, TmpfsReport},
    kernel::{tmpfs::TmpfsWatch, Sensor},
    pipeline::Pipeline,
    state::secret_catalog::{Rebind, SecretCatalog},
    system,
};

/// The tmpfs secrets' watch, polled by the agent's loop.
pub struct TmpfsReads {
    watch: AsyncFd<TmpfsWatch>,
}

impl TmpfsReads {
    /// Marks every tmpfs secret of `catalog`; `None` when there is none. The report says how
    /// many are watched, or why they are not.
    pub fn start(catalog: &SecretCatalog) -> (Option<Self>, TmpfsReport) {
        let on_tmpfs: Vec<_> =
            catalog.iter().filter(|(_, s)| crate::kernel::tmpfs::on_tmpfs(&s.path)).collect();
        if on_tmpfs.is_empty() {
            return (None, TmpfsReport { watched: 0, not_watched: None, reason: None });
        }
        let watched = TmpfsWatch::new().and_then(|mut watch| {
            for (id, secret) in &on_tmpfs {
                watch.watch(&secret.path, *id, secret.id)?;
            }
            // SAFETY: the watch owns its descriptor and keeps it open for as long as it lives.
            unsafe { AsyncFd::register(watch) }.map_err(Into::into)
        });
        match watched {
            Ok(watch) => (
                Some(Self { watch }),
                TmpfsReport { watched: on_tmpfs.len(), not_watched: None, reason: None },
            ),
            Err(e) => (
                None,
                TmpfsReport { watched: 0, not_watched: Some(on_tmpfs.len()), reason: Some(e.to_string()) },
            ),
        }
    }

    /// Marks a secret's new file if it is on tmpfs.
    pub fn rebind(&mut self, catalog: &SecretCatalog, rebind: &Rebind) -> Result<(), Error> {
        let Some(secret) = catalog.get(rebind.secret_id) else { return Ok(()) };
        // A deleted file's fanotify mark went with its inode.
        let Some((new, _)) = rebind.new else { return Ok(()) };
        if !crate::kernel::tmpfs::on_tmpfs(&secret.path) {
            return Ok(());
        }
        self.watch
            .get_mut()
            .watch(&secret.path, rebind.secret_id, new)
            .map_err(|e| Error::system(format!("fanotify mark on {}", secret.path.display()), e))
    }

    /// Waits until an access is pending.
    pub async fn ready(&self) -> Result<tokio::io::unix::AsyncFdReadyGuard<'_, TmpfsWatch>, Error> {
        self.watch.readable().await.map_err(|e| Error::system("polling fanotify", e))
    }

    /// Taints every process waiting on a tmpfs secret, then lets it go on; returns the
    /// documents of the new taints.
    pub fn handle(&self, sensor: &mut Sensor, pipeline: &mut Pipeline) -> Result<Vec<Document>, Error> {
        let watch = self.watch.get_ref();
        let accesses = watch.pending().map_err(|e| Error::system("reading fanotify events", e))?;
        let mut documents = Vec::new();
        for access in accesses {
            let (pid, secret_id, file) = (access.pid, access.secret_id, access.file);
            let reader = pid != std::process::id()
                && secret_id != u32::MAX
                && !pipeline.is_trusted(pid)
                && !sensor.may_open_secrets(pid);
            let taint = reader.then(|| {
                let now = system::monotonic_ns();
                Taint {
                    secret_id,
                    origin_pid: pid,
                    read_ns: now,
                    acquired_ns: now,
                    via_kind: via::DIRECT,
                    via_generation: 0,
                    via: FileId::default(),
                    origin_start_ns: pipeline.start_of(pid).unwrap_or(0),
                }
            });
            let found = match taint {
                Some(taint) => taint_in_kernel(sensor, pipeline, pid, taint, file),
                None => Ok(None),
            };
            // Never left waiting, whatever happened above.
            watch.allow(access).map_err(|e| Error::system("answering fanotify", e))?;
            documents.extend(found?.unwrap_or_default());
        }
        Ok(documents)
    }
}

/// Waits on `reads` if there is a watch, forever otherwise.
pub async fn ready(reads: Option<&TmpfsReads>) -> Result<(), Error> {
    match reads {
        Some(reads) => reads.ready().await.map(|mut guard| guard.clear_ready()),
        None => std::future::pending().await,
    }
}
