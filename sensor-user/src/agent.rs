//! The agent's life: load and attach, then move records from the ring buffer through the
//! pipeline to the output until SIGINT/SIGTERM, reporting lost events as they happen.

use std::{path::Path, time::Duration};

use sensor_common::KernelOffsets;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, Signal, SignalKind},
    time::{interval, MissedTickBehavior},
};

use crate::{
    alert::redact::Redactor,
    background::Background,
    catch_up::ChannelHooks,
    config::allowed_readers,
    config::journal::JournalSettings,
    config::services::Service,
    config::Settings,
    content::Recognizer,
    error::{self, Error},
    format::ecs::{self, Vigie},
    journal::{open_read_only, queries, Journal, JournalError},
    kernel::handover::Records,
    kernel::offsets::{self as kernel_offsets, VMLINUX_BTF},
    kernel::{Sensor, SensorSpec},
    local_addresses::LocalAddresses,
    metrics::Metrics,
    pipeline::{HostFacts, Pipeline},
    reload,
    rules::exfiltration::Correlator,
    sinks::output::Output,
    state::process_table::ProcessTable,
    state::secret_catalog::{Rebind, Scan, SecretCatalog},
    state::taint::TaintTable,
    state::trusted_processes::{TrustChange, TrustedProcesses},
    store_tokens::StoreTokens,
    stores::Stores,
    system,
    tamper::SelfWatch,
    tls_mappings::{self, TlsMappings},
    tmpfs_reads::{self, TmpfsReads},
};

/// How often watched paths are checked for a new identity.
const TICK: Duration = Duration::from_millis(500);
/// Every how many ticks lost events and transfer progress are reported (once a second).
const REPORT_TICKS: u64 = 2;
/// Every how many loss reports the connects seen are pruned to what the kernel still counts.
const PRUNE_REPORTS: u64 = 60;
/// Every how many ticks recursive (`**`) patterns are rescanned: they walk whole trees.
const DEEP_SCAN_TICKS: u64 = 20;
/// Every how many ticks the stores' servers are looked for again (a restarted server).
const STORE_TICKS: u64 = 4;

/// Set to 1, the agent prints to stderr each outbound stream's byte count and digest as it
/// grows (a diagnostic: never the bytes).
const OUTBOUND_DIGESTS_ENV: &str = "VIGIE_DIAG_OUTBOUND_DIGESTS";

/// Counters reported when the agent stops.
#[derive(Debug, Default)]
struct Tally {
    records: u64,
    malformed: u64,
    /// Malformed records already reported.
    malformed_reported: u64,
    lost: u64,
    refused: u64,
    send_totals_full: u64,
    outbound_uncopied: u64,
    /// Updates of the kernel's maps (trust, watch list) that failed: counted, never fatal.
    updates_failed: u64,
    updates_failed_reported: u64,
    /// Loss reports made (every [`REPORT_TICKS`]).
    reports: u64,
}

/// Runs the sensor until interrupted; on SIGHUP, `reload` reads the configuration again.
pub async fn run(mut settings: Settings, reload: impl Fn() -> Result<Settings, Error>) -> Result<(), Error> {
    let window_ns = settings.taint_window.map_or(0, |w| u64::try_from(w.as_nanos()).unwrap_or(u64::MAX));
    let mut catalog = SecretCatalog::resolve(&settings.secret_patterns);
    let mut contents = fingerprints(&catalog);
    let mut store_tokens = StoreTokens::new(&settings.stores);
    store_tokens.read_now(&mut contents.1).await;
    let (mut tmpfs, tmpfs_report) = TmpfsReads::start(&catalog);
    let allowed_exes = allowed_readers::resolve(&settings)?;
    let (mut output, mut journal) = open_outputs(&settings)?;
    // Before anything is loaded: a SIGTERM right after `sensor-started` must stop us cleanly.
    let [mut interrupt, mut terminate, mut hangup] = signals()?;
    let mut sensor = load(&settings, window_ns, &catalog, &allowed_exes)?;
    output.count_in(Metrics::serve(settings.metrics, &sensor)?);
    // Labels after the kernel's watch list is filled: they are no files.
    let mut stores = Stores::new(&settings.stores, &mut catalog, system::ns_per_tick());
    let store_updates_failed = stores.look_now(&mut sensor);
    // Seeded after attaching, so no process falls between the snapshot and the first record.
    let processes = ProcessTable::from_proc(system::ns_per_tick());
    let mut kernel_local = sensor.take_local_addresses()?;
    // A full kernel map (over 1,024 addresses) follows fewer sockets as channels; destinations
    // are still judged by the whole set.
    let local = LocalAddresses::watch(move |addresses| drop(kernel_local.sync(addresses)))
        .map_err(|e| Error::system("reading this host's addresses", e))?;
    let mut started =
        started(&settings, &sensor, &catalog, allowed_exes.len(), local.len(), tmpfs_report, &contents);
    started.stores = stores.report();
    let correlator = Correlator::new(settings.trusted_nets.clone()).on_host(local);
    let mut pipeline = pipeline(&settings, catalog, processes, correlator, window_ns, contents);
    if let Some(kept) = &mut started.kept_loaded {
        kept.derived_files = name_carried_files(&sensor, &mut pipeline, settings.journal.as_ref());
    }
    let mut tally = Tally { updates_failed: store_updates_failed, ..Tally::default() };
    let mut tls = TlsMappings::new(&sensor.tls_libraries);
    apply_trust(&mut sensor, &mut pipeline, &mut tally, &mut tls);
    let mut self_watch = SelfWatch::start(&mut sensor);
    output.write(&pipeline.state(ecs::SENSOR_STARTED, Vigie { started: Some(started), ..Vigie::default() }));
    system::notify_ready()?;

    // SAFETY: the ring buffer owns its fd and keeps it open for as long as the AsyncFd lives.
    let mut ring = unsafe { AsyncFd::register(sensor.take_events()?) }
        .map_err(|e| Error::system("polling the ring buffer", e.into()))?;
    let mut ticks = interval(TICK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut tick = 0u64;
    let mut channel_hooks = ChannelHooks::default();
    take_over(&mut sensor, &mut pipeline, &mut output, &mut tally, &mut channel_hooks, &mut tls)?;
    let mut scans = PathScans::default();
    loop {
        tokio::select! {
            ready = ring.readable_mut() => {
                let mut guard = ready.map_err(|e| Error::system("polling the ring buffer", e))?;
                drain(guard.get_inner_mut(), &mut pipeline, &mut output, &mut tally, &mut sensor, &mut channel_hooks, &mut tls)?;
                guard.clear_ready();
            }
            ready = tmpfs_reads::ready(tmpfs.as_ref()) => {
                ready?;
                if let Some(reads) = &tmpfs {
                    output.write_all(reads.handle(&mut sensor, &mut pipeline)?);
                    channel_hooks.follow(&mut sensor, &pipeline)?;
                }
            }
            holders = channel_hooks.walk.finished() => {
                output.write_all(channel_hooks.walked(&holders, &mut sensor, &mut pipeline)?);
            }
            examined = tls.look.finished() => {
                for probe in tls.found(examined, &mut sensor) {
                    output.write(&pipeline.state(ecs::TLS_LIBRARY_PROBED, Vigie { tls_probe: Some(probe), ..Vigie::default() }));
                }
            }
            looks = stores.look.finished() => {
                tally.updates_failed += stores.found(looks, &mut sensor);
            }
            reads = store_tokens.read.finished() => {
                store_tokens.take(reads, pipeline.recognizer_mut());
            }
            scan = scans.walk.finished() => {
                let rebinds = pipeline.catalog_mut().apply(scan);
                follow_paths(&mut sensor, &mut pipeline, &mut output, tmpfs.as_mut(), rebinds, &mut tally)?;
            }
            _ = ticks.tick() => {
                tick += 1;
                tend_output(&mut output, &pipeline, &mut journal);
                tend_fingerprints(&mut pipeline, tmpfs.is_some());
                scans.start(pipeline.catalog_mut(), tick.is_multiple_of(DEEP_SCAN_TICKS));
                channel_hooks.follow(&mut sensor, &pipeline)?;
                tls.start_look(tick.is_multiple_of(tls_mappings::LOOK_TICKS));
                if tick.is_multiple_of(STORE_TICKS) {
                    stores.start_look();
                }
                store_tokens.start(pipeline.recognizer_mut(), tick.is_multiple_of(STORE_TICKS));
                self_watch.tick(&mut sensor, &mut pipeline, &mut output).await;
                if tick.is_multiple_of(REPORT_TICKS) {
                    report_progress(&sensor, &mut pipeline, &mut output)?;
                    report_loss(&sensor, &mut pipeline, &mut output, &mut tally)?;
                }
            }
            _ = hangup.recv() => {
                reload::apply(&mut settings, reload(), allowed_readers::resolve, &mut output, &mut pipeline, &mut sensor)?;
                scans.full_due = true;
            }
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
    }
    drain(ring.get_mut(), &mut pipeline, &mut output, &mut tally, &mut sensor, &mut channel_hooks, &mut tls)?;
    stop(sensor, &mut pipeline, &mut output, &mut tally, &mut journal)
}

/// Loads and attaches the kernel programs as `settings` say, watching `catalog`.
fn load(
    settings: &Settings,
    window_ns: u64,
    catalog: &SecretCatalog,
    allowed_exes: &[sensor_common::FileId],
) -> Result<Sensor, Error> {
    Sensor::load(&SensorSpec {
        offsets: offsets(window_ns)?,
        secrets: catalog,
        allowed_exes,
        ring_buffer_bytes: settings.ring_buffer_bytes,
        backend: settings.backend,
        keep_loaded: settings.keep_loaded.as_deref(),
    })
}

/// What earlier agents' programs left: the processes they tainted, then their unread records.
fn take_over(
    sensor: &mut Sensor,
    pipeline: &mut Pipeline,
    output: &mut Output,
    tally: &mut Tally,
    channel_hooks: &mut ChannelHooks,
    tls: &mut TlsMappings,
) -> Result<(), Error> {
    if sensor.handover.as_ref().is_some_and(|handover| handover.taints > 0) {
        for (pid, taint) in sensor.tainted()? {
            pipeline.carry(pid, &taint);
        }
    }
    for mut records in sensor.take_pending() {
        drain(&mut records, pipeline, output, tally, sensor, channel_hooks, tls)?;
    }
    channel_hooks.follow(sensor, pipeline)
}

/// Names the derived files whose marks an earlier agent left, by where the journal says they
/// were written (each checked on disk): what alerts through them say in `vigie.via.path`.
fn name_carried_files(
    sensor: &Sensor,
    pipeline: &mut Pipeline,
    journal: Option<&JournalSettings>,
) -> ecs::CarriedFiles {
    let mut report = ecs::CarriedFiles::default();
    if sensor.handover.as_ref().is_none_or(|handover| handover.marks == 0) {
        return report;
    }
    let carried = match sensor.marked(sensor_common::via::FILE) {
        Ok(carried) if carried.is_empty() => return report,
        Ok(carried) => carried,
        Err(error) => {
            report.unnamed_because = Some(error::describe(&error));
            return report;
        }
    };
    report.carried = carried.len();
    let Some(journal) = journal else {
        report.unnamed_because = Some("no journal".to_owned());
        return report;
    };
    let paths = open_read_only(&journal.path)
        .and_then(|conn| queries::derived_paths(&conn).map_err(JournalError::from));
    match paths {
        Ok(paths) => {
            report.named = carried
                .iter()
                .filter(|(id, _)| {
                    paths
                        .get(&id.ino)
                        .is_some_and(|paths| paths.iter().any(|path| pipeline.carry_derived(*id, path)))
                })
                .count();
        }
        Err(error) => report.unnamed_because = Some(error.to_string()),
    }
    report
}

/// The last reports, then every program detached (but those pinned with `keep_loaded`).
fn stop(
    sensor: Sensor,
    pipeline: &mut Pipeline,
    output: &mut Output,
    tally: &mut Tally,
    journal: &mut Journal,
) -> Result<(), Error> {
    report_progress(&sensor, pipeline, output)?;
    report_loss(&sensor, pipeline, output, tally)?;
    tend_output(output, pipeline, journal);
    let mut counters = counters(tally, pipeline, output, journal);
    counters.left_attached = sensor.keeps_loaded().map(|dir| dir.display().to_string());
    let stopped = Vigie { counters: Some(counters), ..Vigie::default() };
    output.write(&pipeline.state(ecs::SENSOR_STOPPED, stopped));
    drop(sensor);
    Ok(())
}

/// What `sensor-stopped` reports.
fn counters(tally: &Tally, pipeline: &Pipeline, output: &Output, journal: &Journal) -> ecs::Counters {
    let (dropped, waiting) = output.undelivered();
    let (journal_dropped, journal_failed) = journal.losses();
    ecs::Counters {
        records: tally.records,
        records_malformed: tally.malformed,
        events_lost: tally.lost,
        taint_inserts_failed: tally.refused,
        send_totals_full: tally.send_totals_full,
        alerts_repeated: pipeline.repeated_alerts(),
        processes_forgotten: pipeline.processes_forgotten(),
        documents_dropped: dropped,
        documents_undelivered: u64::try_from(waiting).unwrap_or(u64::MAX),
        journal_documents_dropped: journal_dropped,
        journal_writes_failed: journal_failed,
        sinks: output.stats(),
        left_attached: None,
    }
}

/// What `sensor-started` says about the watch.
fn started(
    settings: &Settings,
    sensor: &Sensor,
    catalog: &SecretCatalog,
    allowed_readers: usize,
    local_addresses: usize,
    tmpfs_secrets: ecs::TmpfsReport,
    (redactor, recognizer): &(Redactor, Recognizer),
) -> ecs::Started {
    ecs::Started {
        secrets_watched: catalog.len(),
        patterns_unmatched: catalog.unmatched.clone(),
        allowed_readers,
        trusted_nets: settings.trusted_nets.iter().map(ToString::to_string).collect(),
        local_addresses,
        fingerprints: redactor.report(),
        recognizer: recognizer.report(),
        cgroup: sensor.cgroup_root.display().to_string(),
        backend: ecs::Backend { name: sensor.backend.backend.name(), reason: sensor.backend.reason.clone() },
        tmpfs_secrets,
        tls_libraries: sensor.tls_libraries.iter().map(|path| path.display().to_string()).collect(),
        stores: Vec::new(),
        kept_loaded: sensor.keeps_loaded().map(|dir| ecs::KeptLoaded {
            pinned_in: dir.display().to_string(),
            taken_over: sensor.handover.clone().unwrap_or_default(),
            derived_files: ecs::CarriedFiles::default(),
        }),
    }
}

/// Hands every available record to the pipeline and writes what comes out.
fn drain(
    records: &mut Records,
    pipeline: &mut Pipeline,
    output: &mut Output,
    tally: &mut Tally,
    sensor: &mut Sensor,
    channel_hooks: &mut ChannelHooks,
    tls: &mut TlsMappings,
) -> Result<(), Error> {
    while let Some(event) = records.next() {
        tally.records += 1;
        let Ok(event) = event else {
            tally.malformed += 1;
            continue;
        };
        output.write_all(pipeline.handle(&event));
        apply_trust(sensor, pipeline, tally, tls);
    }
    channel_hooks.follow(sensor, pipeline)
}

/// Retries failing sinks and reports each failure (on stderr, which may still be read) or
/// recovery (`output-degraded`, in the output and sinks themselves); reports what the journal
/// lost since the last report (`journal-degraded`).
fn tend_output(output: &mut Output, pipeline: &Pipeline, journal: &mut Journal) {
    if let Some(health) = journal.take_news() {
        output.write(
            &pipeline.state(ecs::JOURNAL_DEGRADED, Vigie { journal: Some(health), ..Vigie::default() }),
        );
    }
    output.retry();
    while let Some(news) = output.take_news() {
        let document =
            pipeline.state(ecs::OUTPUT_DEGRADED, Vigie { output: Some(news.report()), ..Vigie::default() });
        if news.failing {
            output.to_stderr(&document);
        } else {
            output.write(&document);
        }
    }
}

/// The output and the journal of `settings`; the journal gets every document the output is
/// given.
fn open_outputs(settings: &Settings) -> Result<(Output, Journal), Error> {
    let journal = Journal::open(settings.journal.as_ref())?;
    let output = Output::open(settings.output.as_ref(), settings.schema, &settings.sinks, &journal.feed())?;
    Ok((output, journal))
}

/// The kernel's struct offsets (from BTF) and the agent's own settings for the programs.
fn offsets(window_ns: u64) -> Result<KernelOffsets, Error> {
    Ok(KernelOffsets {
        taint_window_ns: window_ns,
        agent_pid: std::process::id(),
        ..kernel_offsets::from_btf(Path::new(VMLINUX_BTF))?
    })
}

/// SIGINT, SIGTERM (stop) and SIGHUP (reload), in that order.
fn signals() -> Result<[Signal; 3], Error> {
    let handler = |kind, name| signal(kind).map_err(|e| Error::system(name, e));
    Ok([
        handler(SignalKind::interrupt(), "SIGINT handler")?,
        handler(SignalKind::terminate(), "SIGTERM handler")?,
        handler(SignalKind::hangup(), "SIGHUP handler")?,
    ])
}

/// The pipeline over the processes running now, with this host's facts, the configured
/// services and the secrets' fingerprints.
fn pipeline(
    settings: &Settings,
    catalog: SecretCatalog,
    processes: ProcessTable,
    correlator: Correlator,
    window_ns: u64,
    contents: (Redactor, Recognizer),
) -> Pipeline {
    let facts = HostFacts {
        host: ecs::Host { name: system::hostname() },
        boot: ecs::Boot { id: system::boot_id(), wall_ns: system::boot_wall_ns() },
    };
    let trusted = TrustedProcesses::new(settings.services.iter().map(Service::resolve).collect());
    let mut pipeline =
        Pipeline::new(facts, catalog, processes, correlator, TaintTable::new(window_ns), trusted);
    pipeline.use_fingerprints(contents);
    if std::env::var_os(OUTBOUND_DIGESTS_ENV).is_some_and(|value| value == "1") {
        pipeline.print_outbound_digests();
    }
    pipeline
}

/// What the agent knows of the watched secrets' contents, to mask them in arguments and
/// recognise them in outbound bytes; read before fanotify holds tmpfs secrets (see
/// [`tend_fingerprints`]).
fn fingerprints(catalog: &SecretCatalog) -> (Redactor, Recognizer) {
    let redactor = Redactor::new(catalog);
    let recognizer = Recognizer::new(redactor.key(), catalog);
    (redactor, recognizer)
}

/// Fingerprints again the watched files whose content changed. While fanotify holds tmpfs
/// secrets, the agent's own open of one would wait for itself: those are left as they are.
fn tend_fingerprints(pipeline: &mut Pipeline, fanotify_holds: bool) {
    pipeline.refresh_fingerprints(|path| !(fanotify_holds && crate::kernel::tmpfs::on_tmpfs(path)));
}

/// Tells the kernel which processes are now trusted services, or no longer, and `tls` whose
/// maps to follow. A change the kernel refuses (a full map) is counted, reported as
/// `events-lost` (`agent-map-update-failed`), and detection goes on.
fn apply_trust(sensor: &mut Sensor, pipeline: &mut Pipeline, tally: &mut Tally, tls: &mut TlsMappings) {
    for change in pipeline.take_trust_changes() {
        let pid = match change {
            TrustChange::Trust { pid, .. } | TrustChange::Untrust { pid } | TrustChange::Shed { pid, .. } => {
                pid
            }
        };
        tls.trust(&change, pipeline.trusted_service(pid));
        if sensor.apply_trust(change).is_err() {
            tally.updates_failed += 1;
        }
    }
}

/// Walks of the watched paths, in the background so that deep globs never hold up the ring
/// buffer; their results are applied on the event loop.
#[derive(Default)]
struct PathScans {
    walk: Background<Scan>,
    /// Whether the next scan covers every pattern (new ones were configured).
    full_due: bool,
}

impl PathScans {
    /// Starts a scan of the shallow patterns, and of the deep (`**`) ones if `deep` or a full
    /// scan is due, unless one is still running.
    fn start(&mut self, catalog: &SecretCatalog, deep: bool) {
        let deep = deep || self.full_due;
        let (patterns, complete) = catalog.patterns_to_scan(|p| deep || !p.contains("**"));
        if self.walk.start(move || Scan::run(patterns, complete)) {
            self.full_due &= !deep;
        }
    }
}

/// Points the kernel at the new identity of every watched path that changed, fingerprints the
/// new contents, and says so.
fn follow_paths(
    sensor: &mut Sensor,
    pipeline: &mut Pipeline,
    output: &mut Output,
    mut tmpfs: Option<&mut TmpfsReads>,
    rebinds: Vec<Rebind>,
    tally: &mut Tally,
) -> Result<(), Error> {
    for rebind in &rebinds {
        if sensor.rebind_secret(rebind).is_err() {
            tally.updates_failed += 1;
        }
        if let Some(reads) = tmpfs.as_deref_mut() {
            reads.rebind(pipeline.catalog_mut(), rebind)?;
        }
    }
    if !rebinds.is_empty() {
        if sensor.settle_prefilter().is_err() {
            tally.updates_failed += 1;
        }
        // The new contents are fingerprinted before anyone is told the path changed.
        tend_fingerprints(pipeline, tmpfs.is_some());
    }
    for rebind in rebinds {
        if let Some(secret) = pipeline.catalog_mut().get(rebind.secret_id).cloned() {
            let document = pipeline.watch_updated(&secret);
            output.write(&document);
        }
    }
    Ok(())
}

/// Reports the bytes alerted transfers have sent since the last report.
fn report_progress(sensor: &Sensor, pipeline: &mut Pipeline, output: &mut Output) -> Result<(), Error> {
    let mut failure = None;
    let documents = pipeline.progress(|key| match sensor.send_total(key) {
        Ok(total) => total.map(|t| t.bytes),
        Err(err) => {
            failure.get_or_insert(err);
            None
        }
    });
    output.write_all(documents);
    failure.map_or(Ok(()), Err)
}

/// Emits an `events-lost` state document for each kind of loss that grew: counted by the
/// kernel, or records the agent could not decode.
fn report_loss(
    sensor: &Sensor,
    pipeline: &mut Pipeline,
    output: &mut Output,
    tally: &mut Tally,
) -> Result<(), Error> {
    let lost_before = tally.lost;
    report_count(pipeline, output, "ring-buffer-full", sensor.events_lost()?, &mut tally.lost);
    tally.reports += 1;
    if tally.lost > lost_before {
        // Connect records may be among the lost: the kernel's byte counts tell which.
        output.write_all(pipeline.recover_lost_connects(&sensor.send_totals()?));
    } else if tally.reports.is_multiple_of(PRUNE_REPORTS) {
        pipeline.forget_uncounted(&sensor.send_totals()?);
    }
    report_count(pipeline, output, "taint-map-full", sensor.inserts_failed()?, &mut tally.refused);
    report_count(
        pipeline,
        output,
        "send-totals-full",
        sensor.send_totals_full()?,
        &mut tally.send_totals_full,
    );
    report_count(
        pipeline,
        output,
        "outbound-uncopied",
        sensor.outbound_uncopied()?,
        &mut tally.outbound_uncopied,
    );
    report_count(pipeline, output, "record-malformed", tally.malformed, &mut tally.malformed_reported);
    report_count(
        pipeline,
        output,
        "agent-map-update-failed",
        tally.updates_failed,
        &mut tally.updates_failed_reported,
    );
    Ok(())
}

/// One `events-lost` document for `reason` if its kernel count grew past `reported`.
fn report_count(
    pipeline: &Pipeline,
    output: &mut Output,
    reason: &'static str,
    total: u64,
    reported: &mut u64,
) {
    if total <= *reported {
        return;
    }
    let lost = ecs::Loss { reason, new: total - *reported, total };
    *reported = total;
    output.write(&pipeline.state(ecs::EVENTS_LOST, Vigie { events_lost: Some(lost), ..Vigie::default() }));
}
