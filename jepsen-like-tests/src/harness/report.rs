//! The run directory: `history.jsonl` (every event), `results.json` (every checker's
//! verdict), `nemesis.jsonl` (the fault timeline), `latency.svg` (operation latency over time
//! by operation type, faults shaded), and each node's log (`node-N.log`, written by the
//! nodes themselves).

use std::io::Write as _;
use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use super::fault;
use super::outcome::RunOutcome;
use crate::history::{Event, F, History, Outcome};

/// Writes the history as JSON lines.
pub fn write_history(path: &Path, events: &[Event]) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?,
    );
    for e in events {
        writeln!(out, "{}", e.to_json_line())?;
    }
    out.flush()?;
    Ok(())
}

/// Writes `results.json`, `nemesis.jsonl` and `latency.svg`.
pub fn write_results(dir: &Path, outcome: &RunOutcome, history: &History) -> anyhow::Result<()> {
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(outcome)?,
    )?;
    let mut timeline = String::new();
    for e in history.events.iter().filter(|e| e.is_nemesis()) {
        timeline.push_str(&e.to_json_line());
        timeline.push('\n');
    }
    std::fs::write(dir.join("nemesis.jsonl"), timeline)?;
    plot_latency(&dir.join("latency.svg"), history)
        .map_err(|e| anyhow::anyhow!("cannot draw the latency plot: {e}"))?;
    Ok(())
}

fn color(f: F) -> RGBColor {
    match f {
        F::Allocate => RGBColor(31, 119, 180),
        F::Release => RGBColor(255, 127, 14),
        F::Check => RGBColor(44, 160, 44),
        _ => RGBColor(148, 103, 189),
    }
}

/// Latency (ms, log scale) of every completed operation against its invocation time (s),
/// by operation type; `info` operations drawn hollow at their known lower bound; fault
/// intervals shaded, like Jepsen's latency plots.
pub fn plot_latency(path: &Path, history: &History) -> Result<(), Box<dyn std::error::Error>> {
    let end_ns = history.events.last().map_or(1, |e| e.time_ns.max(1));
    let end_s = end_ns as f64 / 1e9;
    let points: Vec<(F, f64, f64, bool)> = history
        .ops
        .iter()
        .filter(|o| o.process != crate::history::FINAL)
        .map(|o| {
            let done = o.complete_time_ns.unwrap_or(end_ns);
            let latency_ms = ((done.saturating_sub(o.invoke_time_ns)) as f64 / 1e6).max(0.1);
            (
                o.f,
                o.invoke_time_ns as f64 / 1e9,
                latency_ms,
                o.outcome == Outcome::Ok,
            )
        })
        .collect();
    let max_latency = points.iter().map(|p| p.2).fold(10.0_f64, f64::max) * 1.5;

    let root = SVGBackend::new(path, (1200, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("licd: operation latency under faults", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..end_s, (0.1..max_latency).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc("latency (ms)")
        .draw()?;

    for fault in &history.faults {
        let start = fault.start_time_ns as f64 / 1e9;
        let stop = fault.stop_time_ns.unwrap_or(end_ns) as f64 / 1e9;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(start, 0.1), (stop, max_latency)],
            RGBColor(255, 0, 0).mix(0.08).filled(),
        )))?;
    }
    for f in F::CLIENT {
        let c = color(f);
        chart
            .draw_series(points.iter().filter(|p| p.0 == f).map(|p| {
                let style = if p.3 { c.filled() } else { c.stroke_width(1) };
                Circle::new((p.1, p.2), 2, style)
            }))?
            .label(format!("{} (hollow: info/fail)", f.as_str()))
            .legend(move |(x, y)| Circle::new((x, y), 4, c.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// The lease workload's line of the summary.
fn lease_line(v: &crate::checker::LeaseVerdict) -> String {
    if v.servers == 0 {
        return "leases: no lease workload".to_string();
    }
    let held = match &v.longest_held_after_death {
        Some(h) => format!(
            "longest held after death {:.0} ms (bound {} ms, {} leader changes, {})",
            h.held_ms, h.bound_ms, h.leader_changes, h.node
        ),
        None => "no dead server seen held".to_string(),
    };
    format!(
        "leases: {} servers, {} promises, {} deaths ({} judged), {held}, {} violations",
        v.servers,
        v.promises,
        v.deaths,
        v.deaths_judged,
        v.violations.len()
    )
}

/// One line per checker for the terminal.
pub fn summary(o: &RunOutcome) -> String {
    let r = &o.report;
    let ok_ops = r.recovery.client_ops.ok;
    format!(
        "{name}: {verdict}\n  faults {faults:?}, {injected} injected over {secs:.1} s; {ops} operations, \
         availability {avail:.1}%, longest gap under faults {gap:.0} ms ({ok_ops} ok)\n  \
         linearizable: {lin:?}; cap: {cap}; durability: {dur}; recovery: {rec}; lease: {lease}\n  \
         {leases}\n  report: {dir}",
        name = o.name,
        verdict = if r.valid { "VALID" } else { "INVALID" },
        faults = fault::names(&o.faults),
        injected = o.faults_injected,
        secs = o.fault_seconds,
        ops = o.operations,
        avail = r.recovery.availability.unwrap_or(0.0) * 100.0,
        gap = r.recovery.longest_gap_during_faults_ms,
        lin = r.linearizable.result,
        cap = r.cap.valid,
        dur = r.durability.valid,
        rec = r.recovery.valid,
        lease = r.lease.valid,
        leases = lease_line(&r.lease),
        dir = o.dir.display(),
    )
}
