//! The Schedules tab: each schedule's whole planned curve with the current iteration marked, and
//! the edit form, whose edit is previewed over the planned curve before it is sent.

use super::chart::{self, ChartSeries, ChartSpec};
use super::key_label;
use crate::protocol::schedule::ScheduleName;
use crate::tui::action::Action;
use crate::tui::app::{App, ScheduleCurve};
use crate::tui::edit_form::FormField;
use crate::tui::format::fmt_value;
use crate::tui::store::downsample_min_max;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let area = match super::plan::line(app, area.width) {
        Some(line) if area.height > 8 => {
            let [top, rest] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
            frame.render_widget(Paragraph::new(line), top);
            rest
        }
        _ => area,
    };
    let (charts, form) = if area.width >= 100 {
        let [c, f] = Layout::horizontal([Constraint::Min(40), Constraint::Length(38)]).areas(area);
        (c, f)
    } else {
        let [c, f] = Layout::vertical([Constraint::Min(4), Constraint::Length(8)]).areas(area);
        (c, f)
    };
    draw_charts(app, frame, charts);
    draw_form(app, frame, form);
}

fn color_of(app: &App, name: ScheduleName) -> Color {
    let p = &app.shell.theme.palette;
    match name {
        ScheduleName::Lr => p.lr,
        ScheduleName::Wd => p.wd,
        ScheduleName::TeacherTemp => p.teacher_temp,
        ScheduleName::Momentum => p.momentum,
    }
}

/// Index-based min/max downsampling of a whole curve (x = iteration).
fn curve_points(values: &[f32], buckets: usize) -> Vec<(f64, f64)> {
    // Iterations fit in u32 for any run this tool trains (4 billion iterations).
    let xs: Vec<u32> = (0..values.len() as u32).collect();
    downsample_min_max(&xs, values, buckets, |v| v)
}

fn draw_charts(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.shell.theme;
    if app.schedule_tab.curves.is_empty() {
        let block = Block::bordered().title(Span::styled(" schedules ", t.title())).border_style(t.border());
        let inner = block.inner(area);
        frame.render_widget(block, area);
        frame.render_widget(Paragraph::new(Span::styled("waiting for the trainer's schedules…", t.muted())), inner);
        return;
    }
    let [top, bottom] = Layout::vertical([Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)]).areas(area);
    let [a, b] = Layout::horizontal([Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)]).areas(top);
    let [c, d] = Layout::horizontal([Constraint::Ratio(1, 2), Constraint::Ratio(1, 2)]).areas(bottom);
    let current = app.current_iter();
    let from_iter = app.position().unwrap_or(0);
    let preview = if app.schedule_tab.form.active { app.schedule_tab.form.edit(from_iter).ok() } else { None };
    for (r, name) in [a, b, c, d].into_iter().zip(ScheduleName::ALL) {
        let Some(ScheduleCurve { schedule, values, .. }) = app.schedule(name) else {
            frame.render_widget(Block::bordered().title(format!(" {} ", name.label())).border_style(t.border()), r);
            continue;
        };
        let style = t.series(color_of(app, name));
        let now = current.map(|i| values.get(i.min(values.len().saturating_sub(1))).copied().unwrap_or(0.0));
        let mut title = vec![Span::styled(format!(" {} ", name.label()), t.muted())];
        if let Some(v) = now {
            title.push(Span::styled(fmt_value(v as f64), style.add_modifier(ratatui::style::Modifier::BOLD)));
        }
        if schedule.edit_count > 0 {
            let n = schedule.edit_count;
            title.push(Span::styled(format!(" ({n} edit{})", if n == 1 { "" } else { "s" }), t.muted()));
        }
        let buckets = r.width.max(4) as usize;
        let mut series = Vec::new();
        let selected = app.schedule_tab.form.active && app.schedule_tab.form.schedule_name() == name;
        if let Some(edit) = preview.filter(|e| e.schedule == name) {
            let new: Vec<f32> = schedule.preview(&edit).into_iter().map(|v| v as f32).collect();
            series.push(ChartSeries::new(curve_points(values, buckets), t.muted()));
            series.push(ChartSeries::new(curve_points(&new, buckets), t.series(t.palette.preview)));
            title.push(Span::styled(" preview ", t.warning()));
        } else {
            series.push(ChartSeries::new(curve_points(values, buckets), style));
        }
        title.push(Span::raw(" "));
        let border = if selected { t.accent() } else { t.border() };
        let block = Block::bordered().title(Line::from(title)).border_style(border);
        chart::render(
            frame,
            r,
            ChartSpec {
                block,
                series,
                x_bounds: [0.0, values.len().saturating_sub(1) as f64],
                labels: true,
                y_fmt: fmt_value,
                marker_x: current.map(|i| (i as f64, t.series(t.palette.marker))),
                axis_style: t.muted(),
            },
        );
    }
}

fn draw_form(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.shell.theme;
    let f = &app.schedule_tab.form;
    let title = if f.active { " edit schedule " } else { " edit schedule (inactive) " };
    let block = Block::bordered().title(Span::styled(title, t.title())).border_style(if f.active { t.accent() } else { t.border() });
    let inner = block.inner(area);
    frame.render_widget(block, area);
    // Focus shows without colour too: a ▶ before the focused field and the selection style.
    let field_style = |field: FormField| if f.active && f.field == field { t.selected() } else { t.text() };
    let mark = |field: FormField| if f.active && f.field == field { "▶ " } else { "  " };
    let from_iter = app.position().unwrap_or(0);
    let cursor = if f.active { "▏" } else { "" };
    let mut lines = vec![
        Line::from(vec![
            Span::styled(mark(FormField::Schedule), t.accent()),
            Span::styled("schedule ", t.muted()),
            Span::styled(format!("◂ {} ▸", f.schedule_name().label()), field_style(FormField::Schedule)),
        ]),
        Line::from(vec![
            Span::styled(mark(FormField::Kind), t.accent()),
            Span::styled("change   ", t.muted()),
            Span::styled(format!("◂ {} ▸", f.choice().label()), field_style(FormField::Kind)),
        ]),
        Line::from(vec![
            Span::styled(mark(FormField::Value), t.accent()),
            Span::styled("value    ", t.muted()),
            Span::styled(format!("[{}{cursor}]", f.value), field_style(FormField::Value)),
            Span::styled(" from the next it", t.muted()),
        ]),
    ];
    if f.active {
        let curve = app.schedule(f.schedule_name());
        match (f.checked_edit(from_iter, curve.map(|c| &c.schedule)), curve) {
            (Ok(edit), Some(curve)) => {
                let new = curve.schedule.preview(&edit);
                let at = from_iter.min(new.len().saturating_sub(1));
                let old = curve.values.get(at).map_or(0.0, |v| *v as f64);
                let last_new = new.last().copied().unwrap_or(0.0);
                let last_old = curve.values.last().map_or(0.0, |v| *v as f64);
                lines.push(Line::from(vec![
                    Span::styled("now ", t.muted()),
                    Span::styled(format!("{} → {}", fmt_value(old), fmt_value(new.get(at).copied().unwrap_or(0.0))), t.warning()),
                ]));
                lines.push(Line::from(vec![
                    Span::styled("end ", t.muted()),
                    Span::styled(format!("{} → {}", fmt_value(last_old), fmt_value(last_new)), t.warning()),
                ]));
            }
            (Ok(_), None) => lines.push(Line::from(Span::styled("no such schedule from the trainer yet", t.muted()))),
            (Err(why), _) => lines.push(Line::from(Span::styled(why, t.muted()))),
        }
        // What the keys do in the focused field, in pieces that wrap whole.
        let first = if f.field == FormField::Value { "type a number" } else { "←→ change" };
        let hint = format!("{first} · ↑↓ field · {} apply · {} close", key_label(app, Action::Confirm), key_label(app, Action::Cancel));
        lines.push(Line::from(Span::styled(hint, t.muted())));
    } else {
        lines.push(Line::from(vec![
            Span::styled(key_label(app, Action::EditSchedule), t.accent()),
            Span::styled(" edit  ", t.muted()),
            Span::styled(key_label(app, Action::UndoScheduleEdit), t.accent()),
            Span::styled(" undo last edit", t.muted()),
        ]));
    }
    frame.render_widget(Paragraph::new(lines).wrap(ratatui::widgets::Wrap { trim: false }), inner);
}
