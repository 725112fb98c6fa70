//! The Dashboard: progress, the loss, the four scheduled quantities, collapse indicators, and the
//! machine's GPUs, CPU and memory.

use super::chart::{self, bar, ChartSeries, ChartSpec};
use crate::protocol::RunState;
use crate::telemetry::GpuStatus;
use crate::tui::app::App;
use crate::tui::format::{fmt_bytes, fmt_duration, fmt_value};
use crate::tui::store::Column as Col;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

/// Samples averaged for speed, ETA and data-wait share: long enough to smooth jitter, short enough
/// to follow a change of pace.
const RECENT: usize = 50;
/// Loss within this share of ln(out_dim) means the output is (nearly) uniform.
const UNIFORM_LOSS_SHARE: f64 = 0.99;
/// Teacher entropy below this means one dimension dominates.
const ENTROPY_FLOOR: f64 = 0.1;
/// Student and teacher this close (KL) learn nothing from each other.
const KL_FLOOR: f64 = 1e-3;

/// What a small terminal gives up, first to last: the system and collapse boxes shrink to one
/// summary line (below 22 rows), then the four small charts move under the loss as one row
/// (below 70 columns) and finally go (below 14 rows); the loss chart and the progress lines stay.
pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let bottom_h = if area.height >= 30 {
        9
    } else if area.height >= 22 {
        7
    } else {
        1
    };
    let [verdict, progress, middle, bottom] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(2), Constraint::Min(3), Constraint::Length(bottom_h)]).areas(area);
    draw_verdict(app, frame, verdict);
    draw_progress(app, frame, progress);
    if area.width >= 70 {
        let [loss, minis] = Layout::horizontal([Constraint::Percentage(58), Constraint::Percentage(42)]).areas(middle);
        draw_loss(app, frame, loss);
        draw_minis(app, frame, minis);
    } else if middle.height >= 11 {
        let [loss, minis] = Layout::vertical([Constraint::Min(5), Constraint::Length(5)]).areas(middle);
        draw_loss(app, frame, loss);
        draw_minis_row(app, frame, minis);
    } else {
        draw_loss(app, frame, middle);
    }
    if bottom_h > 1 {
        let [collapse, system] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(bottom);
        draw_collapse(app, frame, collapse);
        draw_system(app, frame, system);
    } else {
        draw_summary_line(app, frame, bottom);
    }
}

/// The health verdict, the line a person reads first: the word in its colour, then its evidence.
fn draw_verdict(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.shell.theme;
    let h = app.trainer.health.health();
    let style = t.verdict(h.verdict);
    let line = Line::from(vec![
        Span::styled(format!("● {} ", h.verdict), style.add_modifier(ratatui::style::Modifier::BOLD)),
        Span::styled(h.evidence, t.muted()),
    ]);
    frame.render_widget(Paragraph::new(line), area);
}

/// The collapse indicators and the machine in one line, for terminals too short for their boxes.
fn draw_summary_line(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.shell.theme;
    let Some(m) = app.trainer.store.last() else { return };
    // Nothing turns red in the first epoch: a healthy run starts with its loss at ln K.
    let judging = app.trainer.health.judging();
    let mut spans = vec![];
    if app.trainer.last_alarm.is_some() {
        spans.push(Span::styled("ALARM (Log tab)  ", t.danger()));
    }
    if let Some(ln_k) = app.trainer.info.as_ref().filter(|r| r.out_dim > 1).map(|r| (r.out_dim as f64).ln()) {
        let share = m.loss / ln_k;
        let style = if judging && share >= UNIFORM_LOSS_SHARE { t.danger() } else { t.ok() };
        spans.push(Span::styled("loss/lnK ", t.muted()));
        spans.push(Span::styled(format!("{:.0}%  ", share * 100.0), style));
    }
    let low = judging && m.teacher_entropy < ENTROPY_FLOOR;
    spans.push(Span::styled("entropy ", t.muted()));
    spans.push(Span::styled(format!("{}  ", fmt_value(m.teacher_entropy)), if low { t.danger() } else { t.ok() }));
    spans.push(Span::styled("KL ", t.muted()));
    spans.push(Span::styled(format!("{}  ", fmt_value(m.kl)), if judging && m.kl < KL_FLOOR { t.warning() } else { t.ok() }));
    let h = &app.trainer.telemetry.host;
    spans.push(Span::styled(format!("CPU {:.0}%", h.cpu_percent), t.text()));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The iterations the time-series charts show: the zoom window ending at the latest (or frozen)
/// iteration.
pub fn visible_range(app: &App) -> Option<(usize, usize)> {
    let latest = app.trainer.store.last()?.iter;
    let end = app.shell.view.frozen_at.unwrap_or(latest).min(latest);
    let start = match app.shell.view.window(app.held_len()) {
        Some(n) => end.saturating_sub(n - 1),
        // Everything held: this session's iterations in-process, the full history when attached.
        None => app.trainer.store.first_iter().unwrap_or(0).min(end),
    };
    Some((start, end))
}

/// The header line: its parts in reading order, each with a rank; when the line does not fit,
/// parts are left out from the highest rank down (data wait, speed, the run's name, the ETA)
/// rather than the line being cut.
fn draw_progress(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.shell.theme;
    let mut parts: Vec<(u8, Span)> = Vec::new();
    let last = app.trainer.store.last();
    // Numbers as everywhere (docs/tui.md, "Numbers"): the 0-based epoch of log.txt, and the
    // iterations done, which is the 0-based `iter` of the next one to run.
    match (&app.trainer.info, last) {
        (Some(run), _) => {
            let epoch = last.map_or(run.start_iter / run.niter_per_ep.max(1), |m| m.epoch);
            let done = app.position().unwrap_or(run.start_iter);
            parts.push((3, Span::styled(run.name.clone(), t.title())));
            parts.push((0, Span::styled(format!("epoch {epoch}/{}", run.epochs), t.text())));
            parts.push((0, Span::styled(format!("it {done}/{}", run.epochs * run.niter_per_ep), t.text())));
        }
        (None, Some(m)) => parts.push((0, Span::styled(format!("epoch {}  it {}", m.epoch, m.iter + 1), t.text()))),
        (None, None) => parts.push((0, Span::styled("waiting for the trainer…", t.muted()))),
    }
    if let Some(eta) = eta_seconds(app).filter(|_| !app.training_over()) {
        let eta = if app.trainer.state == RunState::Paused { "paused".into() } else { fmt_duration(eta) };
        parts.push((2, Span::styled(format!("ETA {eta}"), t.accent())));
    }
    if let Some(ips) = app.trainer.store.recent_mean(Col::ImagesPerS, RECENT) {
        parts.push((4, Span::styled(format!("{ips:.0} img/s"), t.text())));
    }
    if let Some(share) = data_wait_share(app) {
        // A loader that holds the GPU up a third of the time or more is worth a look.
        let style = if share >= 0.33 { t.warning() } else { t.text() };
        parts.push((5, Span::styled(format!("data wait {:.0}%", share * 100.0), style)));
    }
    let width = |p: &[(u8, Span)]| p.iter().map(|(_, s)| s.content.chars().count() + 2).sum::<usize>().saturating_sub(2);
    while width(&parts) > area.width as usize {
        let Some(worst) = parts.iter().enumerate().filter(|(_, (r, _))| *r > 0).max_by_key(|(_, (r, _))| *r).map(|(i, _)| i) else {
            break;
        };
        parts.remove(worst);
    }
    let mut spans = Vec::new();
    for (i, (_, p)) in parts.into_iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled("  ", t.muted()));
        }
        spans.push(p);
    }
    let fraction = match (&app.trainer.info, last) {
        (Some(run), Some(m)) if run.epochs * run.niter_per_ep > 0 => (m.iter + 1) as f64 / (run.epochs * run.niter_per_ep) as f64,
        _ => 0.0,
    };
    let label = format!(" {:5.1}%", fraction * 100.0);
    let w = (area.width as usize).saturating_sub(label.len());
    let gauge = Line::from(vec![Span::styled(bar(w, fraction), t.gauge()), Span::styled(label, t.text())]);
    frame.render_widget(Paragraph::new(vec![Line::from(spans), gauge]), area);
}

fn eta_seconds(app: &App) -> Option<f64> {
    let total = app.total_iters()?;
    let done = app.trainer.store.last()?.iter + 1;
    let per_iter = app.trainer.store.recent_mean(Col::IterTime, RECENT)?;
    Some(total.saturating_sub(done) as f64 * per_iter)
}

fn data_wait_share(app: &App) -> Option<f64> {
    let data = app.trainer.store.recent_mean(Col::DataTime, RECENT)?;
    let iter = app.trainer.store.recent_mean(Col::IterTime, RECENT)?;
    (iter > 0.0).then(|| (data / iter).clamp(0.0, 1.0))
}

fn log10_or_nan(v: f64) -> f64 {
    if v > 0.0 {
        v.log10()
    } else {
        f64::NAN
    }
}

fn draw_loss(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.shell.theme;
    let mut title = vec![Span::styled(" loss ", t.title())];
    if let Some(m) = app.trainer.store.last() {
        title.push(Span::styled(fmt_value(m.loss), t.series(t.palette.loss)));
        if let Some(ema) = app.trainer.store.last_ema() {
            title.push(Span::styled(" ema ", t.muted()));
            title.push(Span::styled(fmt_value(ema as f64), t.series(t.palette.loss_ema)));
        }
    }
    let mut flags = format!(" · {}", app.shell.view.label(app.held_len()));
    if app.shell.view.log_scale {
        flags.push_str(" · log");
    }
    if app.shell.view.frozen_at.is_some() {
        flags.push_str(" · FROZEN");
    }
    title.push(Span::styled(format!("{flags} "), t.muted()));
    let block = Block::bordered().title(Line::from(title)).border_style(t.border());
    let Some((from, to)) = visible_range(app) else {
        let inner = block.inner(area);
        frame.render_widget(block, area);
        frame.render_widget(Paragraph::new(Span::styled("no iterations yet", t.muted())), inner);
        return;
    };
    let buckets = area.width.saturating_sub(12).max(4) as usize;
    let log = app.shell.view.log_scale;
    let map = move |v: f64| if log { log10_or_nan(v) } else { v };
    // Without colour the two lines differ by marker instead.
    let raw_marker = if t.no_color { Marker::Dot } else { Marker::Braille };
    let series = vec![
        ChartSeries {
            marker: raw_marker,
            ..ChartSeries::new(app.trainer.store.downsample(Col::Loss, from, to, buckets, map), t.series(t.palette.loss))
        },
        ChartSeries::new(app.trainer.store.downsample(Col::LossEma, from, to, buckets, map), t.series(t.palette.loss_ema)),
    ];
    let y_fmt: fn(f64) -> String = if log { |y| fmt_value(10f64.powf(y)) } else { fmt_value };
    chart::render(
        frame,
        area,
        ChartSpec { block, series, x_bounds: [from as f64, to as f64], labels: true, y_fmt, marker_x: None, axis_style: t.muted() },
    );
}

fn draw_minis(app: &App, frame: &mut Frame, area: Rect) {
    let [top, bottom] = Layout::vertical([Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)]).areas(area);
    let [a, b] = Layout::horizontal([Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)]).areas(top);
    let [c, d] = Layout::horizontal([Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)]).areas(bottom);
    for (r, col) in [a, b, c, d].into_iter().zip(MINIS) {
        draw_mini(app, frame, r, col);
    }
}

/// The four small charts side by side, for narrow terminals.
fn draw_minis_row(app: &App, frame: &mut Frame, area: Rect) {
    let areas: [Rect; 4] = Layout::horizontal([Constraint::Ratio(1, 4); 4]).areas(area);
    for (r, col) in areas.into_iter().zip(MINIS) {
        draw_mini(app, frame, r, col);
    }
}

const MINIS: [Col; 4] = [Col::Lr, Col::Wd, Col::TeacherTemp, Col::Momentum];

fn draw_mini(app: &App, frame: &mut Frame, r: Rect, col: Col) {
    let t = &app.shell.theme;
    let last = app.trainer.store.last();
    let (name, short, color, value) = match col {
        Col::Lr => ("lr", "lr", t.palette.lr, last.map(|m| m.lr)),
        Col::Wd => ("wd", "wd", t.palette.wd, last.map(|m| m.wd)),
        Col::TeacherTemp => ("t-temp", "temp", t.palette.teacher_temp, last.map(|m| m.teacher_temp)),
        _ => ("momentum", "mom", t.palette.momentum, last.map(|m| m.momentum)),
    };
    // A narrow chart keeps its value whole by shortening its name.
    let name = if r.width < 20 { short } else { name };
    let style = t.series(color);
    let value = value.map(fmt_value).unwrap_or_else(|| "–".into());
    let title = Line::from(vec![
        Span::styled(format!(" {name} "), t.muted()),
        Span::styled(format!("{value} "), style.add_modifier(ratatui::style::Modifier::BOLD)),
    ]);
    let block = Block::bordered().title(title).border_style(t.border());
    match visible_range(app) {
        Some((from, to)) => {
            let pts = app.trainer.store.downsample(col, from, to, r.width.max(2) as usize, |v| v);
            chart::render(
                frame,
                r,
                ChartSpec {
                    block,
                    series: vec![ChartSeries::new(pts, style)],
                    x_bounds: [from as f64, to as f64],
                    labels: true,
                    y_fmt: fmt_value,
                    marker_x: None,
                    axis_style: t.muted(),
                },
            );
        }
        None => frame.render_widget(block, r),
    }
}

fn draw_collapse(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.shell.theme;
    let block = Block::bordered().title(Span::styled(" collapse ", t.title())).border_style(t.border());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(m) = app.trainer.store.last() else {
        frame.render_widget(Paragraph::new(Span::styled("no iterations yet", t.muted())), inner);
        return;
    };
    let ln_k = app.trainer.info.as_ref().filter(|r| r.out_dim > 1).map(|r| (r.out_dim as f64).ln());
    // Nothing turns red in the first epoch: a healthy run starts with its loss at ln K.
    let judging = app.trainer.health.judging();
    let ok_or = |bad: bool, style: Style| if bad && judging { style } else { t.ok() };
    let mut lines = Vec::new();
    match ln_k {
        Some(ln_k) => {
            let share = m.loss / ln_k;
            let bad = judging && share >= UNIFORM_LOSS_SHARE;
            lines.push(Line::from(vec![
                Span::styled("loss/ln K ", t.muted()),
                Span::styled(format!("{:.1}%", share * 100.0), ok_or(bad, t.danger())),
                Span::styled(format!("  ln K {ln_k:.2}"), t.muted()),
                Span::styled(if bad { "  uniform?" } else { "" }, t.danger()),
            ]));
            let low = judging && m.teacher_entropy < ENTROPY_FLOOR;
            let high = judging && m.teacher_entropy >= UNIFORM_LOSS_SHARE * ln_k;
            lines.push(Line::from(vec![
                Span::styled("entropy   ", t.muted()),
                Span::styled(fmt_value(m.teacher_entropy), ok_or(low || high, if low { t.danger() } else { t.warning() })),
                Span::styled(format!("  of {ln_k:.2}"), t.muted()),
                Span::styled(
                    if low {
                        "  one dim?"
                    } else if high {
                        "  uniform?"
                    } else {
                        ""
                    },
                    t.danger(),
                ),
            ]));
        }
        None => {
            lines.push(Line::from(Span::styled("ln K unknown (no run info)", t.muted())));
            let low = m.teacher_entropy < ENTROPY_FLOOR;
            lines.push(Line::from(vec![
                Span::styled("entropy   ", t.muted()),
                Span::styled(fmt_value(m.teacher_entropy), ok_or(low, t.danger())),
            ]));
        }
    }
    let low_kl = judging && m.kl < KL_FLOOR;
    lines.push(Line::from(vec![
        Span::styled("KL        ", t.muted()),
        Span::styled(fmt_value(m.kl), ok_or(low_kl, t.warning())),
        Span::styled(if low_kl { "  student = teacher?" } else { "" }, t.warning()),
    ]));
    if let Some(alarm) = &app.trainer.last_alarm {
        lines.push(Line::from(vec![Span::styled("alarm ", t.danger()), Span::styled(alarm.clone(), t.text())]));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

/// The trainer's process as it reports itself, while it runs; and this viewer's memory when it
/// is another process (`dino attach`), labelled so neither passes for the other.
fn process_lines(app: &App, bar_w: usize) -> Vec<Line<'static>> {
    let t = &app.shell.theme;
    let own = app.trainer.telemetry.host.process_mem;
    let running = matches!(app.trainer.state, RunState::Starting | RunState::Running | RunState::Paused);
    let Some(p) = app.trainer.process.as_ref().filter(|_| running) else {
        return vec![Line::from(vec![Span::styled("self ", t.muted()), Span::styled(fmt_bytes(own), t.text())])];
    };
    let cores = app.trainer.telemetry.host.cpu_count.max(1) as f64;
    let mut spans = vec![
        Span::styled("trainer ", t.muted()),
        Span::styled(bar(bar_w.saturating_sub(3).max(4), p.cpu_percent as f64 / 100.0 / cores), t.gauge()),
        Span::styled(format!(" {:.0}% cpu {} {} threads", p.cpu_percent, fmt_bytes(p.rss), p.threads), t.text()),
    ];
    if let Some(m) = p.gpu_mem {
        spans.push(Span::styled(format!(" gpu {}", fmt_bytes(m)), t.text()));
    }
    if let Some(u) = p.gpu_util {
        spans.push(Span::styled(format!(" {u}%"), t.text()));
    }
    let mut lines = vec![Line::from(spans)];
    if p.pid != std::process::id() {
        lines.push(Line::from(vec![Span::styled("viewer ", t.muted()), Span::styled(fmt_bytes(own), t.text())]));
    }
    lines
}

fn draw_system(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.shell.theme;
    let block = Block::bordered().title(Span::styled(" system ", t.title())).border_style(t.border());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let tel = &app.trainer.telemetry;
    let bar_w = (inner.width as usize).saturating_sub(30).clamp(4, 20);
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let mut lines = Vec::new();
    match &tel.gpus {
        GpuStatus::Unavailable(why) => lines.push(Line::from(Span::styled(format!("no GPU ({why})"), t.muted()))),
        GpuStatus::Gpus(gpus) if gpus.is_empty() => lines.push(Line::from(Span::styled("no GPU (0 devices)", t.muted()))),
        GpuStatus::Gpus(gpus) => {
            for g in gpus {
                let util = g.util_percent.unwrap_or(0);
                let mut spans = vec![
                    Span::styled(format!("GPU{} ", g.index), t.muted()),
                    Span::styled(bar(bar_w, util as f64 / 100.0), t.gauge()),
                    Span::styled(format!(" {util:3}%"), t.text()),
                ];
                if let (Some(u), Some(tot)) = (g.mem_used, g.mem_total) {
                    let style = if tot > 0 && u as f64 / tot as f64 > 0.95 { t.warning() } else { t.text() };
                    spans.push(Span::styled(format!(" {:.1}/{:.0}G", gib(u), gib(tot)), style));
                }
                if let Some(c) = g.temperature_c {
                    spans.push(Span::styled(format!(" {c}°C"), if c >= 85 { t.danger() } else { t.text() }));
                }
                if let Some(p) = g.power_w {
                    spans.push(Span::styled(format!(" {p:.0}W"), t.text()));
                }
                lines.push(Line::from(spans));
            }
        }
    }
    let h = &tel.host;
    lines.push(Line::from(vec![
        Span::styled("CPU  ", t.muted()),
        Span::styled(bar(bar_w, h.cpu_percent as f64 / 100.0), t.gauge()),
        Span::styled(format!(" {:3.0}% ×{}", h.cpu_percent, h.cpu_count), t.text()),
    ]));
    let ram = if h.ram_total > 0 { h.ram_used as f64 / h.ram_total as f64 } else { 0.0 };
    lines.push(Line::from(vec![
        Span::styled("RAM  ", t.muted()),
        Span::styled(bar(bar_w, ram), t.gauge()),
        Span::styled(format!(" {:.1}/{:.1} GiB", gib(h.ram_used), gib(h.ram_total)), if ram > 0.95 { t.warning() } else { t.text() }),
    ]));
    lines.extend(process_lines(app, bar_w));
    frame.render_widget(Paragraph::new(lines), inner);
}
