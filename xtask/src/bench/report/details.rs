//! The numbers behind the summary: every round, what the agent saw, the BPF programs' own
//! cost, perf profiles and the loss accounting.

use std::fmt::Write;

use super::format::{group, group_f, mb, sign};
use super::Report;
use crate::bench::loss::FloodRun;
use crate::bench::stats::{max, percentile};

pub fn write(report: &Report, out: &mut String) {
    rounds(report, out);
    cpu(report, out);
    bpf(report, out);
    super::neighbours::attachments(report, out);
    perf(report, out);
    latency(report, out);
    loss(report, out);
}

fn rounds(report: &Report, out: &mut String) {
    let r = &report.rounds;
    out.push_str("\n### Every round\n\n");
    out.push_str(
        "ns per iteration (workloads 1, 2, 7, 9), µs per connect (3), MB/s (4), requests/s (8); \
         none / vigie (/ auditd).\n\n",
    );
    out.push_str(
        "| Round | 1 | 7 auditd | 9 vigie | 2 allowed | 2 untrusted | 3 | 4 | 8 | vigie saw: reads (direct + via pipe), alerts, lost | others' BPF programs (none / vigie) |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for i in 0..r.open_plain.len() {
        let pair = |paired: &crate::bench::stats::Paired, scale: f64| {
            format!("{} / {}", group_f(paired.baseline[i] / scale), group_f(paired.treated[i] / scale))
        };
        let connect = format!("{:.1} / {:.1}", r.connect.baseline[i] / 1e3, r.connect.treated[i] / 1e3);
        let seen = r.sightings.get(i).map_or_else(String::new, |s| {
            format!("{} + {}, {}, {}", s.secret_reads.0, s.secret_reads.1, s.alerts, s.lost)
        });
        let others =
            r.neighbours.get(i).map_or_else(String::new, |(none, vigie)| format!("{none} / {vigie}"));
        let nginx = format!("{} / {}", pair(&r.nginx, 1.0), group_f(r.nginx_auditd.treated[i]));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {connect} | {} | {nginx} | {seen} | {others} |",
            i + 1,
            pair(&r.open_plain, 1.0),
            group_f(r.open_plain_auditd.treated[i]),
            group_f(r.open_plain_bystander.treated[i]),
            pair(&r.open_secret_allowed, 1.0),
            pair(&r.open_secret_untrusted, 1.0),
            pair(&r.stream, 1e6),
        );
    }
}

fn cpu(report: &Report, out: &mut String) {
    let c = &report.rounds.cpu;
    out.push_str(
        "\n### CPU time of the looping thread\n\nThe same runs, in CPU ns per iteration of the \
         load process's thread (`/proc/thread-self/schedstat`; softirq work it triggers is charged \
         to it on this kernel): unlike the wall clock, it does not grow while the thread waits \
         for a core.\n\n| Loop | No sensor | With sensor | Cost (median of pairs) |\n|---|---|---|---|\n",
    );
    let loops = [
        ("1 ordinary file", &c.open_plain),
        ("2 secret, allowed reader", &c.open_secret_allowed),
        ("2 secret, untrusted reader", &c.open_secret_untrusted),
        ("3 loopback connect + close", &c.connect),
        ("7 ordinary file, auditd", &c.open_plain_auditd),
        ("9 ordinary file, another process tainted", &c.open_plain_bystander),
    ];
    for (what, paired) in loops {
        let difference = paired.median_difference();
        let _ = writeln!(
            out,
            "| {what} | {} ns | {} ns | {}{} ns, {:+.1} % |",
            group_f(paired.median_baseline()),
            group_f(paired.median_treated()),
            sign(difference),
            group_f(difference.abs()),
            paired.median_change_percent(),
        );
    }
}

fn bpf(report: &Report, out: &mut String) {
    out.push_str("\n### The BPF programs' own cost\n\n");
    out.push_str(
        "One more run of each workload under Vigie with `kernel.bpf_stats_enabled=1`, counters \
         from `bpftool -j prog show` for the agent's own programs. Runs include every other \
         process on the machine during that time. Agent CPU: the agent's own user + system time \
         during the workload (procfs, in clock ticks of 10 ms).\n\n",
    );
    out.push_str(
        "| Workload | Program | Type | Runs | Runs per iteration | Avg ns/run | Total ms | BPF per \
         iteration | Agent CPU |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for profile in &report.profiles.bpf {
        let per_iteration = format!("{:.0} ns per {}", profile.bpf_ns_per_iteration(), profile.unit);
        let cpu = &profile.agent_cpu;
        let agent = format!("{:.0} ms in {:.1} s", cpu.cpu_seconds * 1e3, cpu.wall.as_secs_f64());
        for (i, program) in profile.programs.iter().filter(|program| program.runs > 0).enumerate() {
            let first = i == 0;
            let workload = if first { profile.workload } else { "" };
            let (total, agent) = if first { (per_iteration.as_str(), agent.as_str()) } else { ("", "") };
            #[expect(clippy::cast_precision_loss, reason = "run times and counts are far below 2^52")]
            let (total_ms, per_iteration) =
                (program.run_ns as f64 / 1e6, program.runs as f64 / profile.iterations.max(1) as f64);
            let _ = writeln!(
                out,
                "| {workload} | {} | {} | {} | {per_iteration:.2} | {:.0} | {total_ms:.1} | {total} | {agent} |",
                program.name,
                program.kind,
                group(program.runs),
                program.avg_ns(),
            );
        }
    }
}

fn perf(report: &Report, out: &mut String) {
    if report.profiles.perf.is_empty() {
        return;
    }
    out.push_str("\n### Where the time goes (perf, cpu-clock samples)\n\n");
    out.push_str(
        "Share of the load process's samples in BPF programs (`bpf_prog_*`) and in the kernel code \
         that runs them (tracepoint glue, helpers, probe reads, map lookups: `trace_call_bpf`, \
         `bpf_*`, `copy_from_kernel_nofault`, ...). In the no-sensor runs, any share comes from \
         other sensors loaded on the machine at the time.\n\n| Run | BPF programs | BPF glue |\n|---|---|---|\n",
    );
    for profile in &report.profiles.perf {
        let _ = writeln!(
            out,
            "| {} | {:.1} % | {:.1} % |",
            profile.label,
            profile.bpf_programs.max(0.0),
            profile.bpf_glue.max(0.0)
        );
    }
    for profile in &report.profiles.perf {
        let _ = writeln!(out, "\n{}:\n\n```", profile.label);
        for line in &profile.top {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str("```\n");
    }
}

fn latency(report: &Report, out: &mut String) {
    let l = &report.latency;
    let negative = l.latencies_ms.iter().filter(|ms| **ms < 0.0).count();
    let _ = writeln!(
        out,
        "\n### Alert latency\n\n{} exfiltrations, {} alerts matched by pid.\n\n\
         - from `connect()` returning to the alert line: {}; {negative} alerts were read before \
         `connect()` returned (the kernel reports the connect while the handshake is under way)\n\
         - from `connect()` being called: {}",
        l.exfiltrations,
        l.latencies_ms.len(),
        distribution(&l.latencies_ms),
        distribution(&l.from_call_ms),
    );
}

/// "min …, p50 …, p90 …, p99 …, max … ms".
fn distribution(ms: &[f64]) -> String {
    format!(
        "min {:.3}, p50 {:.3}, p90 {:.3}, p99 {:.3}, max {:.3} ms",
        ms.iter().copied().fold(f64::NAN, f64::min),
        percentile(ms, 50.0),
        percentile(ms, 90.0),
        percentile(ms, 99.0),
        max(ms),
    )
}

fn loss(report: &Report, out: &mut String) {
    out.push_str("\n### Loss accounting\n\n");
    out.push_str(
        "Produced: counted by the workers (one secret read each, one connect record per attempt). \
         Consumed: the workers' `secret-read` lines and alert lines, plus the connects the agent \
         counted as repeats of an alert. Lost: the highest `events-lost` total; it also counts lost \
         process-lifecycle records, so it can exceed the gap. Records: everything the agent took \
         off the ring buffer. Not counted as produced: `secret-read` lines of the load generator \
         and the bench, which read the workers' reports through pipes (the sensor follows taint \
         through pipes).\n\n",
    );
    out.push_str(
        "| Run | Produced | /s | Consumed | Lost (lines) | Unaccounted | Records | Via pipe | Agent CPU | Peak RSS |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    let loss = &report.loss;
    for run in [&loss.unpaced, &loss.paced, &loss.forced] {
        loss_row(run, out);
    }
}

fn loss_row(run: &FloodRun, out: &mut String) {
    let spec = &run.spec;
    let ring = spec.ring_bytes.map_or_else(|| "default ring".to_owned(), |bytes| format!("{bytes} B ring"));
    let pace = spec.rate.map_or_else(|| "unpaced".to_owned(), |rate| format!("at {}/s", group(rate)));
    let _ = writeln!(
        out,
        "| {} workers, {} {pace}, {:.1} s, {ring} | {} ({} reads + {} connects, {} odd) | {} | {} ({} + {} + {} repeats) \
         | {} ({}) | {} | {} | {} | {:.0} % | {:.1} MB |",
        run.workers,
        spec.transport,
        run.seconds,
        group(run.produced()),
        group(run.secret_reads),
        group(run.connects),
        run.other_errors,
        group_f(run.produced_per_second()),
        group(run.consumed()),
        group(run.read_lines),
        group(run.alert_lines),
        group(run.repeats),
        group(run.lost),
        run.loss_lines,
        group(run.unaccounted()),
        run.records.map_or_else(|| "?".to_owned(), group),
        run.derived_read_lines,
        run.cpu.percent(),
        mb(run.peak_rss_kib),
    );
}
