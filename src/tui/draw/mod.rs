//! `draw`: a pure function of `App`. Each tab has its own file; this one lays out the screen, the
//! tab bar and footer, and the overlays.

mod chart;
mod checkpoints;
mod dashboard;
mod evaluation;
mod log;
mod neighbours;
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

/// What a frame needs that drawing (a pure function of `App`) cannot do: the dashboard's charts of
/// an old range finer than the store's summary are read back from `metrics.jsonl` here, once.
pub fn prepare(app: &mut App) {
    if app.shell.tab != Tab::Dashboard {
        return;
    }
    if let Some((from, to)) = dashboard::visible_range(app) {
        let columns = app.shell.size.0 as usize;
        app.trainer.store.prepare_range(from, to, columns);
    }
}

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
        Line::from(vec![Span::styled(msg.clone(), style), Span::styled(eval_progress(app), t.muted())])
    } else if app.training_over() {
        over_hint(app, area.width)
    } else {
        let mut spans = Vec::new();
        let mut used = 0usize;
        for (action, what) in FOOTER {
            // The key does what its label says now: on a paused run it resumes.
            let what = if action == Action::TogglePause && app.trainer.state == RunState::Paused { "resume" } else { what };
            let mut key = key_label(app, action);
            if action == Action::ZoomIn {
                key = format!("{key}/{}", key_label(app, Action::ZoomOut));
            }
            // Whole hints only: one that does not fit is left out, not cut.
            used += key.chars().count() + what.chars().count() + 1;
            if used > area.width as usize {
                break;
            }
            used += 2;
            spans.push(Span::styled(key, t.accent()));
            spans.push(Span::styled(format!(" {what}  "), t.muted()));
        }
        Line::from(spans)
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// The running evaluations' share done (" · linear 40 %"), beside the message on every tab: the
/// bars are on the Evaluation tab, and an evaluation asked for elsewhere looked stuck.
fn eval_progress(app: &App) -> String {
    app.eval_tab.progress.iter().map(|(kind, done, total)| format!(" · {} {} %", kind.label(), done * 100 / (*total).max(1))).collect()
}

/// What the keys do on a run that is over: `q` quits, and on a stopped or failed run `dino
/// attach` can start a trainer on it again with `p`.
fn over_hint(app: &App, width: u16) -> Line<'static> {
    let t = &app.shell.theme;
    let at = app.position().map(|i| format!(" at it {i}")).unwrap_or_default();
    let (what, relaunch) = match app.trainer.state {
        _ if app.trainer.gone && !app.trainer.state.is_over() => ("trainer gone".to_string(), false),
        RunState::Finished => (format!("finished{at}"), false),
        RunState::Failed => (format!("failed{at}"), app.shell.can_relaunch),
        _ => (format!("stopped{at}"), app.shell.can_relaunch),
    };
    let (p, q) = (key_label(app, Action::TogglePause), key_label(app, Action::Quit));
    let resumable = !relaunch && app.trainer.state != RunState::Finished && !app.trainer.gone;
    // The long form when it fits the footer, else the short one.
    let build = |long: bool| {
        let mut spans = vec![Span::styled(format!("{what} — "), t.warning())];
        if relaunch {
            spans.push(Span::styled(p.clone(), t.accent()));
            spans.push(Span::styled(if long { " continues it in the background, " } else { " resumes, " }, t.muted()));
        }
        spans.push(Span::styled(q.clone(), t.accent()));
        spans.push(Span::styled(" quits", t.muted()));
        if resumable && long {
            spans.push(Span::styled("; the same command resumes it", t.muted()));
        }
        Line::from(spans)
    };
    let long = build(true);
    if long.width() <= width as usize {
        long
    } else {
        build(false)
    }
}

/// The first key bound to an action, for hints.
pub(crate) fn key_label(app: &App, action: Action) -> String {
    app.shell.keymap.keys_for(action).first().map(|k| k.label()).unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests;
