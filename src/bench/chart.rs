//! An SVG chart of a benchmark run: throughput over time (warm-up shaded) and the time each
//! pipeline stage takes per sample, labelled with where it ran. Plain SVG text, no dependencies.

use super::report::BenchReport;
use std::fmt::Write;

const WIDTH: f64 = 800.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 30.0;
const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
const TIME_TOP: f64 = 50.0;
const TIME_H: f64 = 220.0;
const BARS_TOP: f64 = TIME_TOP + TIME_H + 80.0;
const BAR_H: f64 = 22.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" upper bound for an axis: 1, 2 or 5 × 10^k at or above `max`.
fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * magnitude)
}

pub fn render_svg(report: &BenchReport) -> String {
    let height = BARS_TOP + report.stages.len() as f64 * (BAR_H + 8.0) + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="24" font-size="15" font-weight="bold">sluice bench {} — {:.0} images/s, {} threads, batch {}, stall {:.1}%</text>"#,
        escape(&report.workload),
        report.images_per_second,
        report.threads,
        report.batch_size,
        report.stall_fraction * 100.0
    );

    // Throughput over time.
    let t_max = report.wall_seconds.max(1e-9);
    let y_max = nice_ceiling(
        report
            .timeline
            .iter()
            .map(|p| p.images_per_second)
            .fold(0.0, f64::max),
    );
    let x = |t: f64| LEFT + t / t_max * PLOT_W;
    let y = |v: f64| TIME_TOP + TIME_H - v / y_max * TIME_H;
    if report.warmup_end_s > 0.0 {
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{TIME_TOP}" width="{:.1}" height="{TIME_H}" fill="#f3e6c4"/><text x="{:.1}" y="{:.1}" fill="#8a6d1f">warm-up</text>"##,
            x(report.warmup_end_s) - LEFT,
            LEFT + 4.0,
            TIME_TOP + 14.0
        );
    }
    for i in 0..=5 {
        let v = y_max * f64::from(i) / 5.0;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v:.0}</text>"##,
            LEFT + PLOT_W,
            LEFT - 6.0,
            y(v) + 4.0,
            yy = y(v)
        );
        let t = t_max * f64::from(i) / 5.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{t:.1} s</text>"#,
            x(t),
            TIME_TOP + TIME_H + 18.0
        );
    }
    let points: Vec<String> = std::iter::once((0.0, 0.0))
        .chain(report.timeline.iter().map(|p| (p.t_s, p.images_per_second)))
        .map(|(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
        .collect();
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#1f5fa8" stroke-width="2"/>"##,
        points.join(" ")
    );
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{:.1}" font-weight="bold">images/s over time</text>"#,
        TIME_TOP - 8.0
    );

    // Per-stage time per sample.
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{:.1}" font-weight="bold">time per sample by stage (µs on one thread) and where it ran</text>"#,
        BARS_TOP - 12.0
    );
    let label_w = 260.0;
    let bar_max = report
        .stages
        .iter()
        .map(|r| r.us_per_call)
        .fold(0.0, f64::max)
        .max(1e-9);
    for (i, row) in report.stages.iter().enumerate() {
        let top = BARS_TOP + i as f64 * (BAR_H + 8.0);
        let w = row.us_per_call / bar_max * (PLOT_W - label_w - 80.0);
        let _ = writeln!(
            s,
            r##"<text x="{LEFT}" y="{:.1}">{} [cpu]</text><rect x="{:.1}" y="{top:.1}" width="{w:.1}" height="{BAR_H}" fill="#4c9a5b"/><text x="{:.1}" y="{:.1}">{:.1} µs ({:.0}%)</text>"##,
            top + 15.0,
            escape(&row.name),
            LEFT + label_w,
            LEFT + label_w + w + 6.0,
            top + 15.0,
            row.us_per_call,
            row.share * 100.0
        );
    }
    s.push_str("</svg>\n");
    s
}
