//! Rows 8 (nginx, the neighbour's throughput), 9 (workload 1 beside a tainted process), 10
//! and 11 (TLS writes and nginx over HTTPS, under the TLS uprobes),
//! and where the agent's programs are attached.

use std::fmt::Write;

use super::cost::{row, Cost, Row};
use super::format::{sign, Unit};
use super::Report;
use crate::bench::links::Attachments;
use crate::bench::stats::Paired;

/// Workload 8's target: the neighbour keeps this share of its no-sensor throughput.
const NGINX_KEPT_PERCENT: f64 = 98.0;

pub fn rows(report: &Report, out: &mut String) {
    let r = &report.rounds;
    let what = format!(
        "nginx serving 2 KiB static files to wrk on loopback, separate CPUs, {} s per arm",
        report.plan.nginx_time.as_secs()
    );
    let vigie = kept_percent(&r.nginx);
    throughput_row(out, "8", &what, &r.nginx)
        .target(&format!("≥ {NGINX_KEPT_PERCENT:.0} %"), Some(vigie >= NGINX_KEPT_PERCENT));
    throughput_row(out, "8", "the same under auditd (`-w SECRET -p r` + connect rule)", &r.nginx_auditd)
        .target("—", None);
    let tls = Cost::of(&r.tls_writes, &r.cpu.tls_writes);
    let what = "256 B TLS writes of an untainted client through libssl (Python `ssl` to a TLS sink on loopback): the uprobe every TLS write pays";
    row(out, "10", what, tls, Unit::Ns, "—").untargeted();
    let what = "workload 8 over HTTPS (nginx's `SSL_write` under the uprobes)";
    let kept = kept_percent(&r.nginx_tls);
    throughput_row(out, "11", what, &r.nginx_tls)
        .target(&format!("≥ {NGINX_KEPT_PERCENT:.0} %"), Some(kept >= NGINX_KEPT_PERCENT));
    let bystander = Cost::of(&r.open_plain_bystander, &r.cpu.open_plain_bystander);
    let what = "workload 1, another process tainted (a bystander read the secret and stays alive, silent)";
    row(out, "9", what, bystander, Unit::Ns, "—").untargeted();
}

/// Median over rounds of the treated arm's throughput as a percentage of the no-sensor one.
fn kept_percent(pairs: &Paired) -> f64 {
    100.0 + pairs.median_change_percent()
}

/// A throughput row (8, 11) up to its target cell: requests per second, and the share kept.
fn throughput_row<'a>(out: &'a mut String, number: &str, what: &str, pairs: &Paired) -> Row<'a> {
    let difference = pairs.median_difference();
    let _ = write!(
        out,
        "| {number} | {what} | {} | {} | {}{}; {:.1} % of the no-sensor throughput |",
        Unit::ReqPerS.show(pairs.median_baseline()),
        Unit::ReqPerS.show(pairs.median_treated()),
        sign(difference),
        Unit::ReqPerS.show(difference.abs()),
        kept_percent(pairs),
    );
    Row { out }
}

/// The agent's links when idle, and what it added while workload 9's bystander was tainted.
pub fn attachments(report: &Report, out: &mut String) {
    let idle = &report.idle.attachments;
    out.push_str("\n### Where the agent's programs are attached\n\n");
    out.push_str(
        "`bpftool -j link list` entries of the agent's own programs (the ones whose descriptors it \
         holds), at the end of the idle window: the steady state, with nothing tainted.\n\n",
    );
    list(out, idle.links.iter().map(crate::bench::links::Link::describe));
    if !idle.unattached.is_empty() {
        let names: Vec<String> =
            idle.unattached.iter().map(|(name, kind)| format!("`{name}` ({kind})")).collect();
        let _ = writeln!(out, "\nHeld by the agent with no BPF link (not attached): {}.", names.join(", "));
    }
    let tainted: &Attachments = &report.rounds.bystander_attachments;
    let added: Vec<String> = tainted.beyond(idle).map(crate::bench::links::Link::describe).collect();
    let dropped: Vec<String> = idle.beyond(tainted).map(crate::bench::links::Link::describe).collect();
    out.push_str("\nWhile workload 9's bystander was tainted (last round), compared with idle:\n\n");
    if added.is_empty() && dropped.is_empty() {
        out.push_str("- the same links\n");
    }
    list(out, added.iter().map(|link| format!("added {link}")));
    list(out, dropped.iter().map(|link| format!("gone {link}")));
}

fn list(out: &mut String, items: impl Iterator<Item = String>) {
    for item in items {
        let _ = writeln!(out, "- {item}");
    }
}
