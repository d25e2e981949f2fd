//! The report: one summary table with the targets, then the details behind it. Markdown,
//! printed as is and written to the benchmarks document.

mod cost;
mod details;
mod format;
mod neighbours;

use std::fmt::Write;

use super::ab::Rounds;
use super::idle::Idle;
use super::latency::Latency;
use super::loss::{FloodRun, Loss};
use super::machine::Machine;
use super::profile::Profiles;
use super::Plan;
use cost::{row, Cost, Row};
use format::{group, group_f, mb, verdict, Unit};

/// Workload 6's rate target: events per second with zero loss.
const LOSS_FREE_RATE: f64 = 50_000.0;

pub struct Report {
    pub plan: Plan,
    pub machine: Machine,
    pub idle: Idle,
    pub rounds: Rounds,
    pub profiles: Profiles,
    pub latency: Latency,
    pub loss: Loss,
}

impl Report {
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(out, "## Results of `{}`, {}\n", m.command, m.date);
        let _ = writeln!(
            out,
            "Linux {}, {} cores ({}), {:.0} GiB; load average at start {}; BPF programs loaded by \
             others at start: {}; tree {}. {} rounds; medians over per-round pairs.\n",
            m.kernel,
            m.cores,
            m.cpu_model,
            m.memory_gib,
            m.load_average,
            m.foreign_bpf_programs.map_or_else(|| "?".to_owned(), |n| n.to_string()),
            m.revision,
            self.rounds.open_plain.len(),
        );
        let p = &self.plan;
        let _ = writeln!(
            out,
            "Per run: {} open + read + close, {} connects, {} MiB streamed in {} B writes; {} \
             exfiltrating processes; {} flooding processes for {} s ({} s with the forced-loss ring); \
             wrk against nginx for {} s.\n",
            group(p.open_read_iterations),
            group(p.connect_iterations),
            p.stream_bytes >> 20,
            group(p.stream_chunk),
            group(p.exfiltrations),
            p.flood_workers,
            p.flood_time.as_secs(),
            p.forced_loss_time.as_secs(),
            p.nginx_time.as_secs(),
        );
        self.summary(&mut out);
        details::write(self, &mut out);
        out
    }

    fn summary(&self, out: &mut String) {
        out.push_str("| # | Workload | No sensor | With sensor | Cost (median of pairs) | Target | Met |\n");
        out.push_str("|---|---|---|---|---|---|---|\n");
        self.overhead_rows(out);
        self.latency_row(out);
        self.loss_rows(out);
        self.auditd_row(out);
        neighbours::rows(self, out);
        self.idle_row(out);
    }

    fn overhead_rows(&self, out: &mut String) {
        let (rounds, cpu) = (&self.rounds, &self.rounds.cpu);
        let (vigie, auditd) = (Cost::of(&rounds.open_plain, &cpu.open_plain), self.auditd_cost());
        let open = "open + read 64 B + close";
        let target = "≤ 3 % (wall and CPU), < auditd";
        row(out, "1", &format!("{open}, ordinary file"), vigie, Unit::Ns, target)
            .met(vigie.at_most(3.0) && vigie.below(&auditd));
        let allowed = Cost::of(&rounds.open_secret_allowed, &cpu.open_secret_allowed);
        row(out, "2", &format!("{open}, secret, allowed reader"), allowed, Unit::Ns, "—").untargeted();
        let untrusted = Cost::of(&rounds.open_secret_untrusted, &cpu.open_secret_untrusted);
        row(out, "2", &format!("{open}, secret, untrusted reader (tainted)"), untrusted, Unit::Ns, "—")
            .untargeted();
        let connect = Cost::of(&rounds.connect, &cpu.connect);
        row(
            out,
            "3",
            "TCP connect + close on loopback, untainted",
            connect,
            Unit::Us,
            "≤ 3 % (wall and CPU)",
        )
        .met(connect.at_most(3.0));
        let stream = Cost { wall: &rounds.stream, cpu: None };
        row(
            out,
            "4",
            "tainted process streaming to the namespace host, 16 KiB writes",
            stream,
            Unit::MBps,
            "≤ 2 % loss",
        )
        .met(-rounds.stream.median_change_percent() <= 2.0);
    }

    fn auditd_cost(&self) -> Cost<'_> {
        Cost::of(&self.rounds.open_plain_auditd, &self.rounds.cpu.open_plain_auditd)
    }

    fn auditd_row(&self, out: &mut String) {
        let vigie = Cost::of(&self.rounds.open_plain, &self.rounds.cpu.open_plain);
        let auditd = self.auditd_cost();
        let what = "workload 1 under auditd (`-w SECRET -p r` + connect rule)";
        row(out, "7", what, auditd, Unit::Ns, "above Vigie's cost").met(vigie.below(&auditd));
    }

    fn latency_row(&self, out: &mut String) {
        let latency = &self.latency;
        let _ = writeln!(
            out,
            "| 5 | alert latency, {} exfiltrating processes (journal and two sinks on) | — | p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms | \
             {} alerts missing | p99 ≤ 5 ms | {} |",
            latency.exfiltrations,
            latency.p50(),
            latency.p99(),
            latency.max(),
            latency.missing(),
            verdict(Some(latency.p99() <= 5.0 && latency.missing() == 0)),
        );
    }

    fn loss_rows(&self, out: &mut String) {
        let Loss { unpaced, paced, forced } = &self.loss;
        let workers = unpaced.workers;
        flood_row(
            out,
            &format!("{workers} processes reading a secret, then TCP connects as fast as they can"),
            unpaced,
        )
        .target("—", None);
        let paced_met = paced.produced_per_second() >= LOSS_FREE_RATE
            && paced.lost == 0
            && paced.unaccounted() == 0
            && (unpaced.lost == 0 || unpaced.produced_per_second() > LOSS_FREE_RATE);
        let rate = group(paced.spec.rate.unwrap_or(0));
        let what = format!("{workers} processes reading a secret, then UDP connects paced at {rate}/s");
        flood_row(out, &what, paced).target("zero loss at ≥ 50,000/s", Some(paced_met));
        let _ = writeln!(
            out,
            "| 6 | forced loss: {} B ring buffer, TCP as fast as they can, {:.0} s | — | produced {}, \
             consumed {}, lost {} in {} `events-lost` lines | {} produced events unaccounted | every loss \
             counted and reported | {} |",
            forced.spec.ring_bytes.unwrap_or(0),
            forced.seconds,
            group(forced.produced()),
            group(forced.consumed()),
            group(forced.lost),
            forced.loss_lines,
            group(forced.unaccounted()),
            verdict(Some(forced_loss_reported(forced))),
        );
    }

    fn idle_row(&self, out: &mut String) {
        let idle = &self.idle;
        let _ = writeln!(
            out,
            "| — | agent idle, {:.0} s | — | {:.2} % of a core, peak RSS {:.1} MB (now {:.1} MB) | {} \
             records handled (other processes' lifecycle) | < 0.5 %, < 40 MB | {} |",
            idle.cpu.wall.as_secs_f64(),
            idle.cpu.percent(),
            mb(idle.peak_rss_kib),
            mb(idle.rss_kib),
            idle.records.map_or_else(|| "?".to_owned(), group),
            verdict(Some(idle.cpu.percent() < 0.5 && mb(idle.peak_rss_kib) < 40.0)),
        );
    }
}

/// A workload 6 row up to its target cell.
fn flood_row<'a>(out: &'a mut String, what: &str, run: &FloodRun) -> Row<'a> {
    let _ = write!(
        out,
        "| 6 | {what}, {:.0} s | — | {} events/s; produced {}, consumed {}, lost {} | agent {:.0} % of a \
         core, peak RSS {:.1} MB |",
        run.seconds,
        group_f(run.produced_per_second()),
        group(run.produced()),
        group(run.consumed()),
        group(run.lost),
        run.cpu.percent(),
        mb(run.peak_rss_kib),
    );
    Row { out }
}

/// Forced loss is handled when losses happened, were said, and cover every missing event.
pub fn forced_loss_reported(run: &FloodRun) -> bool {
    run.lost > 0 && run.loss_lines > 0 && run.unaccounted() == 0
}
