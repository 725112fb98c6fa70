//! `draw`: a pure function of `App`. Each tab has its own file; this one lays out the screen, the
//! tab bar and footer, and the overlays.

mod chart;
mod checkpoints;
mod dashboard;
mod evaluation;
mod log;
mod outliers;
mod overlays;
mod plan;
mod schedules;

use super::action::Action;
use super::app::{App, Tab};
use super::layout::{centered, screen, tab_labels, too_small, BADGE_WIDTH, MIN_HEIGHT, MIN_WIDTH};
use crate::protocol::RunState;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

pub fn draw(app: &App, frame: &mut Frame) {
    let area = frame.area();
    frame.render_widget(Block::default().style(app.shell.theme.base()), area);
    if too_small(area) {
        let text = format!("terminal too small (need {MIN_WIDTH}x{MIN_HEIGHT})");
        let w = (text.chars().count() as u16).min(area.width);
        let h = if area.width >= text.chars().count() as u16 { 1 } else { 3 };
        let p = Paragraph::new(text).style(app.shell.theme.warning()).wrap(Wrap { trim: true });
        frame.render_widget(p, centered(area, w.max(1), h));
        return;
    }
    let s = screen(area);
    draw_tab_bar(app, frame, s.tabs);
    match app.shell.tab {
        Tab::Dashboard => dashboard::draw(app, frame, s.body),
        Tab::Schedules => schedules::draw(app, frame, s.body),
        Tab::Evaluation => evaluation::draw_evaluation(app, frame, s.body),
        Tab::Outliers => outliers::draw(app, frame, s.body),
        Tab::Checkpoints => checkpoints::draw(app, frame, s.body),
        Tab::Log => log::draw(app, frame, s.body),
    }
    draw_footer(app, frame, s.footer);
    if app.shell.help {
        overlays::draw_help(app, frame, area);
    }
    if let Some(choice) = app.shell.quit_dialog {
        overlays::draw_quit(app, frame, area, choice);
    }
}

fn draw_tab_bar(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.shell.theme;
    let mut spans: Vec<Span> = Vec::new();
    for (tab, label, _, _) in tab_labels(area.width) {
        let style = if tab == app.shell.tab { t.selected() } else { t.muted() };
        spans.push(Span::styled(label, style));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
    let (label, style) = state_badge(app);
    let w = BADGE_WIDTH.min(area.width);
    let badge = Rect { x: area.x + area.width - w, width: w, ..area };
    frame.render_widget(Paragraph::new(Line::from(Span::styled(label, style))).right_aligned(), badge);
}

fn state_badge(app: &App) -> (String, Style) {
    let t = &app.shell.theme;
    if app.trainer.gone && !app.trainer.state.is_over() {
        return ("DISCONNECTED".into(), t.danger());
    }
    match app.trainer.state {
        RunState::Starting => ("STARTING".into(), t.muted()),
        RunState::Running => ("● RUNNING".into(), t.ok()),
        RunState::Paused => ("‖ PAUSED".into(), t.warning()),
        RunState::Stopped => ("■ STOPPED".into(), t.warning()),
        RunState::Finished => ("✔ FINISHED".into(), t.accent()),
        RunState::Failed => ("✖ FAILED".into(), t.danger()),
    }
}

/// The main keys, in the order the footer shows them.
const FOOTER: [(Action, &str); 10] = [
    (Action::Help, "help"),
    (Action::Quit, "quit"),
    (Action::TogglePause, "pause"),
    (Action::Checkpoint, "ckpt"),
    (Action::EvalKnn, "k-NN"),
    (Action::EvalLinear, "linear"),
    (Action::SchedulesTab, "sched"),
    (Action::Freeze, "freeze"),
    (Action::ZoomIn, "zoom"),
    (Action::ToggleLogScale, "log"),
];

fn draw_footer(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.shell.theme;
    let line = if let Some(msg) = &app.shell.status {
        let style = if msg.starts_with("error") || msg.starts_with("alarm") { t.danger() } else { t.accent() };
        Line::from(Span::styled(msg.clone(), style))
    } else if app.training_over() {
        let what = if app.trainer.gone && !app.trainer.state.is_over() { "trainer gone" } else { "training is over" };
        let q = key_label(app, Action::Quit);
        Line::from(vec![Span::styled(format!("{what} — "), t.warning()), Span::styled(q, t.accent()), Span::styled(" quits", t.muted())])
    } else {
        let mut spans = Vec::new();
        for (action, what) in FOOTER {
            let mut key = key_label(app, action);
            if action == Action::ZoomIn {
                key = format!("{key}/{}", key_label(app, Action::ZoomOut));
            }
            spans.push(Span::styled(key, t.accent()));
            spans.push(Span::styled(format!(" {what}  "), t.muted()));
        }
        Line::from(spans)
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// The first key bound to an action, for hints.
pub(crate) fn key_label(app: &App, action: Action) -> String {
    app.shell.keymap.keys_for(action).first().map(|k| k.label()).unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests;
