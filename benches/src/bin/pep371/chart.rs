//! The SVG chart of the PEP 371 table: one panel per workload, bars grouped
//! by worker count, one colour per mode, multiproc solid and Python pale,
//! on a logarithmic time axis (the times span six orders of magnitude).
//!
//! Drawn with plotters' SVG backend only (no font or bitmap dependencies:
//! text sizes are estimated, the viewer renders the fonts).

use std::error::Error;
use std::path::Path;

use plotters::backend::SVGBackend;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::{fmt_secs, Report};
use crate::workloads::{MODES, WORKLOADS};

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 1260;
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
    let panels = body.split_evenly((3, 2));
    for (panel, workload) in panels.iter().zip(WORKLOADS) {
        draw_panel(panel, report, workload)?;
    }
    if let Some(last) = panels.get(WORKLOADS.len()) {
        draw_legend(last, report.python.version.is_some())?;
    }
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
