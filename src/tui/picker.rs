//! `dino attach` with no run named: the runs this machine knows (`./runs` and the run index) in a
//! table, most recently active first, with what a person chooses by — status, epoch, loss, best
//! k-NN. Enter attaches to the selected one; q or Esc leaves. A screen of its own, before the
//! attached TUI starts, so it shares nothing with the `App`.

use super::terminal::TerminalGuard;
use super::theme::Theme;
use crate::files::ShowPath;
use crate::run::runs::RunSummary;
use crossterm::event::{Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;
use std::path::PathBuf;

pub struct Picker {
    runs: Vec<RunSummary>,
    selected: usize,
}

/// What a key did to the picker.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Stay,
    Chosen(PathBuf),
    Cancelled,
}

impl Picker {
    pub fn new(runs: Vec<RunSummary>) -> Self {
        Self { runs, selected: 0 }
    }

    fn key(&mut self, code: KeyCode, modifiers: KeyModifiers) -> Step {
        let last = self.runs.len().saturating_sub(1);
        match code {
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => self.selected = (self.selected + 1).min(last),
            KeyCode::Home | KeyCode::Char('g') => self.selected = 0,
            KeyCode::End | KeyCode::Char('G') => self.selected = last,
            KeyCode::PageUp => self.selected = self.selected.saturating_sub(10),
            KeyCode::PageDown => self.selected = (self.selected + 10).min(last),
            KeyCode::Enter => return self.runs.get(self.selected).map_or(Step::Cancelled, |r| Step::Chosen(r.path.clone())),
            KeyCode::Esc | KeyCode::Char('q') => return Step::Cancelled,
            KeyCode::Char('c') if modifiers.contains(KeyModifiers::CONTROL) => return Step::Cancelled,
            _ => {}
        }
        Step::Stay
    }
}

/// Draws the picker: a title, the table and the keys.
pub fn draw(frame: &mut Frame, picker: &Picker, theme: &Theme) {
    let [table_area, hint_area] = Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(frame.area());
    let header = Row::new(["run", "status", "epoch", "loss", "k-NN@20", "health", "path"]).style(theme.title());
    let rows = picker.runs.iter().map(|r| {
        let status_style = match r.status {
            crate::run::runs::Status::Live { .. } => theme.ok(),
            crate::run::runs::Status::Failed | crate::run::runs::Status::Crashed => theme.danger(),
            _ => theme.text(),
        };
        Row::new([
            Cell::from(r.name.clone()),
            Cell::from(Span::styled(r.status.label(), status_style)),
            Cell::from(r.epoch.map_or("–".into(), |(e, n)| format!("{e}/{n}"))),
            Cell::from(r.last_loss.map_or("–".into(), |l| format!("{l:.4}"))),
            Cell::from(r.best_knn.map_or("–".into(), |k| format!("{k:.1} %"))),
            Cell::from(Span::styled(r.health.verdict.label(), theme.verdict(r.health.verdict))),
            Cell::from(Span::styled(r.path.shown().to_string(), theme.muted())),
        ])
    });
    let name_width = picker.runs.iter().map(|r| r.name.chars().count()).max().unwrap_or(0).clamp(3, 28);
    let widths = [
        Constraint::Length(name_width as u16),
        Constraint::Length(13),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Fill(1),
    ];
    let title = format!(" attach to which run? ({} known) ", picker.runs.len());
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::default().borders(Borders::ALL).border_style(theme.border()).title(Span::styled(title, theme.title())))
        .row_highlight_style(theme.selected())
        .highlight_symbol("▶ ");
    let mut state = TableState::default().with_selected(Some(picker.selected));
    frame.render_stateful_widget(table, table_area, &mut state);
    let hint = Line::from(vec![
        Span::styled("↑↓", theme.accent()),
        Span::styled(" choose  ", theme.muted()),
        Span::styled("enter", theme.accent()),
        Span::styled(" attach  ", theme.muted()),
        Span::styled("q", theme.accent()),
        Span::styled(" leave", theme.muted()),
    ]);
    frame.render_widget(Paragraph::new(hint), hint_area);
}

/// Shows the picker until a run is chosen (its directory) or the person leaves (None).
pub fn pick(runs: Vec<RunSummary>, theme: &Theme) -> anyhow::Result<Option<PathBuf>> {
    let mut picker = Picker::new(runs);
    let mut guard = TerminalGuard::enter()?;
    loop {
        guard.terminal.draw(|f| draw(f, &picker, theme))?;
        // Blocking: nothing else changes this screen.
        if let TermEvent::Key(k) = crossterm::event::read()? {
            if k.kind == KeyEventKind::Release {
                continue;
            }
            match picker.key(k.code, k.modifiers) {
                Step::Stay => {}
                Step::Chosen(p) => return Ok(Some(p)),
                Step::Cancelled => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::runs::Status;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn run(name: &str, status: Status, knn: Option<f64>) -> RunSummary {
        RunSummary {
            name: name.into(),
            path: PathBuf::from(format!("runs/{name}")),
            status,
            epoch: Some((3, 10)),
            last_loss: Some(4.25),
            best_knn: knn,
            health: crate::protocol::health::HealthTracker::default().health(),
            modified: 0.0,
        }
    }

    #[test]
    fn lists_runs_and_enter_attaches_to_the_selected_one() {
        let runs = vec![run("demo", Status::Live { paused: false }, Some(41.5)), run("cifar", Status::Finished, None)];
        let mut p = Picker::new(runs);
        let mut t = Terminal::new(TestBackend::new(80, 8)).unwrap();
        t.draw(|f| draw(f, &p, &Theme::default_theme())).unwrap();
        insta::assert_snapshot!(t.backend());
        assert_eq!(p.key(KeyCode::Down, KeyModifiers::NONE), Step::Stay);
        assert_eq!(p.key(KeyCode::Down, KeyModifiers::NONE), Step::Stay, "stops at the last run");
        assert_eq!(p.key(KeyCode::Enter, KeyModifiers::NONE), Step::Chosen(PathBuf::from("runs/cifar")));
        assert_eq!(p.key(KeyCode::Esc, KeyModifiers::NONE), Step::Cancelled);
        assert_eq!(Picker::new(vec![]).key(KeyCode::Enter, KeyModifiers::NONE), Step::Cancelled, "nothing to choose");
    }
}
