//! The SVG chart of the PEP 371 table: one panel per workload, bars grouped
//! by worker count, one colour per mode, multiproc solid and Python pale,
//! on a logarithmic time axis (the times span six orders of magnitude);
//! below them, the Pool panel: time per task of each Pool figure,
//! multiproc beside Python.
//!
//! Drawn with plotters' SVG backend only (no font or bitmap dependencies:
//! text sizes are estimated, the viewer renders the fonts).

use std::error::Error;
use std::path::Path;

use plotters::backend::SVGBackend;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::ipc::Unit;
use crate::report::{fmt_secs, Figure, Report};
use crate::workloads::{MODES, WORKLOADS};

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 1680;
/// Height of the workload panels (the Pool panel takes the rest).
const TABLE_HEIGHT: u32 = 1220;
/// Width of one worker group on the x axis (integer coordinates, so the
/// axis can carry custom key points).
const GROUP: i32 = 1200;
const MODE_COLORS: [RGBColor; 3] = [
    RGBColor(76, 114, 176),
    RGBColor(221, 132, 82),
    RGBColor(85, 168, 104),
];

/// Draws the chart of `report`'s table and writes it to `path` (creating
/// its directory).
pub(crate) fn write_svg(path: &Path, report: &Report) -> Result<(), Box<dyn Error>> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        draw(&root, report)?;
        root.present()?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, svg)?;
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn draw(root: &Area<'_>, report: &Report) -> Result<(), Box<dyn Error>> {
    root.fill(&WHITE)?;
    let title = match &report.python.version {
        Some(v) => format!(
            "PEP 371 workloads: multiproc vs Python {v} multiprocessing (best of {}, {} CPUs)",
            report.best_of, report.machine.cpus
        ),
        None => format!(
            "PEP 371 workloads: multiproc (best of {}, {} CPUs; no Python figures)",
            report.best_of, report.machine.cpus
        ),
    };
    let body = root.titled(&title, ("sans-serif", 22))?;
    let (table, pool) = body.split_vertically(TABLE_HEIGHT);
    let panels = table.split_evenly((3, 2));
    for (panel, workload) in panels.iter().zip(WORKLOADS) {
        draw_panel(panel, report, workload)?;
    }
    if let Some(last) = panels.get(WORKLOADS.len()) {
        draw_legend(last, report.python.version.is_some())?;
    }
    draw_pool(&pool, report)?;
    Ok(())
}

/// Colour of the Pool panel's bars.
const POOL_COLOR: RGBColor = RGBColor(129, 114, 179);

/// Seconds per task of a Pool figure (rates inverted; the primes map's
/// wall time divided by its items), or `None` if it has no value.
fn per_task(f: &Figure, v: Option<f64>, primes_items: f64) -> Option<f64> {
    let v = v.filter(|v| v.is_finite() && *v > 0.0)?;
    Some(match (f.unit, f.key) {
        (Unit::TasksPerS, _) => 1.0 / v,
        (Unit::Us, "pool_map_primes_us") => v / 1e6 / primes_items,
        (_, _) => v / 1e6,
    })
}

fn draw_pool(area: &Area<'_>, report: &Report) -> Result<(), Box<dyn Error>> {
    let with_python = report.python.version.is_some();
    let primes_items = crate::pool::Budget::new(report.quick).primes as f64;
    let n = report.pool.len().max(1) as i32;
    let per_group = if with_python { 2 } else { 1 };
    let width = GROUP * 6 / 10 / per_group;
    let mut bars = Vec::new();
    for (g, f) in report.pool.iter().enumerate() {
        let x0 = g as i32 * GROUP + GROUP / 5;
        if let Some(s) = per_task(f, f.multiproc, primes_items) {
            bars.push((x0, x0 + width, s, false));
        }
        if let Some(s) = per_task(f, f.python, primes_items).filter(|_| with_python) {
            bars.push((x0 + width, x0 + 2 * width, s, true));
        }
    }
    let (lo, hi) = bars.iter().fold((f64::INFINITY, 0f64), |(lo, hi), b| {
        (lo.min(b.2), hi.max(b.2))
    });
    let (lo, hi) = if bars.is_empty() {
        (1e-9, 1.0)
    } else {
        (lo / 3.0, hi * 2.0)
    };
    let keys: Vec<i32> = (0..n).map(|g| g * GROUP + GROUP / 2).collect();
    let labels: Vec<&str> = report.pool.iter().map(|f| f.label).collect();
    let caption = if with_python {
        format!(
            "Pool, {} workers: time per task, multiproc (solid) vs Python multiprocessing.Pool (pale); shorter is better",
            crate::pool::WORKERS
        )
    } else {
        format!(
            "Pool, {} workers: time per task; shorter is better",
            crate::pool::WORKERS
        )
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(70)
        .build_cartesian_2d((0..n * GROUP).with_key_points(keys), (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|x| {
            usize::try_from(*x / GROUP)
                .ok()
                .and_then(|g| labels.get(g).copied())
                .unwrap_or("")
                .to_owned()
        })
        .y_labels(6)
        .y_label_formatter(&|y| fmt_secs(*y))
        .y_desc("per task")
        .draw()?;
    chart.draw_series(bars.iter().map(|&(x0, x1, s, python)| {
        let style = if python {
            POOL_COLOR.mix(0.3).filled()
        } else {
            POOL_COLOR.filled()
        };
        Rectangle::new([(x0, lo), (x1, s)], style)
    }))?;
    chart.draw_series(
        bars.iter()
            .filter(|b| b.3)
            .map(|&(x0, x1, s, _)| Rectangle::new([(x0, lo), (x1, s)], POOL_COLOR.stroke_width(1))),
    )?;
    Ok(())
}

/// The bars of one workload: (left, right, seconds, mode index, python?).
fn bars(report: &Report, workload: &str, with_python: bool) -> Vec<(i32, i32, f64, usize, bool)> {
    let per_group = if with_python { 6 } else { 3 };
    let width = GROUP * 8 / 10 / per_group;
    let mut out = Vec::new();
    for (g, &w) in report.workers.iter().enumerate() {
        for (m, mode) in MODES.iter().enumerate() {
            let Some(cell) = report
                .table
                .iter()
                .find(|c| c.workload == workload && c.mode == *mode && c.workers == w)
            else {
                continue;
            };
            let slot = if with_python { 2 * m } else { m } as i32;
            let x0 = g as i32 * GROUP + GROUP / 10 + slot * width;
            if let Some(s) = cell.multiproc_s.filter(|s| *s > 0.0) {
                out.push((x0, x0 + width, s, m, false));
            }
            if let Some(s) = cell.python_s.filter(|_| with_python) {
                out.push((x0 + width, x0 + 2 * width, s, m, true));
            }
        }
    }
    out
}

fn draw_panel(area: &Area<'_>, report: &Report, workload: &str) -> Result<(), Box<dyn Error>> {
    let with_python = report.python.version.is_some();
    let bars = bars(report, workload, with_python);
    let (lo, hi) = bars.iter().fold((f64::INFINITY, 0f64), |(lo, hi), b| {
        (lo.min(b.2), hi.max(b.2))
    });
    let (lo, hi) = if bars.is_empty() {
        (1e-6, 1.0)
    } else {
        (lo / 3.0, hi * 2.0)
    };
    let groups = report.workers.len().max(1) as i32;
    let keys: Vec<i32> = (0..groups).map(|g| g * GROUP + GROUP / 2).collect();
    let workers = report.workers.clone();
    let mut chart = ChartBuilder::on(area)
        .caption(workload, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (0..groups * GROUP).with_key_points(keys),
            (lo..hi).log_scale(),
        )?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|x| {
            let w = usize::try_from(*x / GROUP)
                .ok()
                .and_then(|g| workers.get(g).copied())
                .unwrap_or(0);
            format!("{w} worker{}", if w == 1 { "" } else { "s" })
        })
        .y_labels(6)
        .y_label_formatter(&|y| fmt_secs(*y))
        .y_desc("wall time")
        .draw()?;
    chart.draw_series(bars.iter().map(|&(x0, x1, s, m, python)| {
        let color = MODE_COLORS[m];
        let style = if python {
            color.mix(0.3).filled()
        } else {
            color.filled()
        };
        Rectangle::new([(x0, lo), (x1, s)], style)
    }))?;
    // Python's pale bars get an outline in their mode's colour.
    chart.draw_series(bars.iter().filter(|b| b.4).map(|&(x0, x1, s, m, _)| {
        Rectangle::new([(x0, lo), (x1, s)], MODE_COLORS[m].stroke_width(1))
    }))?;
    Ok(())
}

fn draw_legend(area: &Area<'_>, with_python: bool) -> Result<(), Box<dyn Error>> {
    let font = ("sans-serif", 16).into_font();
    let mut y = 40;
    area.draw(&Text::new("legend", (40, y), font.clone()))?;
    y += 34;
    for (m, mode) in MODES.iter().enumerate() {
        let c = MODE_COLORS[m];
        area.draw(&Rectangle::new([(40, y), (62, y + 16)], c.filled()))?;
        area.draw(&Text::new(
            format!("{mode}: multiproc"),
            (70, y),
            font.clone(),
        ))?;
        if with_python {
            area.draw(&Rectangle::new(
                [(280, y), (302, y + 16)],
                c.mix(0.3).filled(),
            ))?;
            area.draw(&Rectangle::new(
                [(280, y), (302, y + 16)],
                c.stroke_width(1),
            ))?;
            area.draw(&Text::new(
                format!("{mode}: Python"),
                (310, y),
                font.clone(),
            ))?;
        }
        y += 30;
    }
    y += 14;
    for line in [
        "serial: the workload n times in a row",
        "threads: once in each of n std::threads",
        "processes: once in each of n multiproc::Process (fork)",
        "time axis logarithmic; shorter is better",
    ] {
        area.draw(&Text::new(line, (40, y), font.clone()))?;
        y += 24;
    }
    Ok(())
}
