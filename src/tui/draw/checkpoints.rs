//! The Checkpoints tab: every checkpoint the trainer reported, newest first, with the k-NN and
//! linear accuracy of the evaluations run on its weights.

use super::key_label;
use crate::protocol::EvalKind;
use crate::tui::action::Action;
use crate::tui::app::App;
use crate::tui::format::{fmt_bytes, fmt_utc, fmt_value};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.shell.theme;
    let block = Block::bordered()
        .title(Span::styled(format!(" checkpoints ({}) ", app.checkpoint_tab.rows.len()), t.title()))
        .border_style(t.border());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [table_area, hint_area] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
    let hint = Line::from(vec![
        Span::styled(key_label(app, Action::Checkpoint), t.accent()),
        Span::styled(" checkpoint now  ", t.muted()),
        Span::styled(key_label(app, Action::Confirm), t.accent()),
        Span::styled("/", t.muted()),
        Span::styled(key_label(app, Action::EvalKnn), t.accent()),
        Span::styled(" k-NN  ", t.muted()),
        Span::styled(key_label(app, Action::EvalLinear), t.accent()),
        Span::styled(" linear  ", t.muted()),
        Span::styled(key_label(app, Action::CopyPath), t.accent()),
        Span::styled(" copy path", t.muted()),
    ]);
    frame.render_widget(Paragraph::new(hint), hint_area);
    if app.checkpoint_tab.rows.is_empty() {
        let msg = format!("no checkpoints yet; press {} to write one", key_label(app, Action::Checkpoint));
        frame.render_widget(Paragraph::new(Span::styled(msg, t.muted())), table_area);
        return;
    }
    let rows: Vec<Row> = app
        .checkpoint_tab
        .rows
        .iter()
        .rev()
        .map(|c| {
            let acc = |kind| accuracy_at(app, kind, c.iter).map(|v| format!("{v:.1}%")).unwrap_or_else(|| "–".into());
            Row::new(vec![
                Cell::from(format!("{}", c.epoch)),
                Cell::from(format!("{}", c.iter)),
                Cell::from(fmt_utc(c.time)),
                Cell::from(fmt_bytes(c.bytes)),
                Cell::from(c.loss.map(fmt_value).unwrap_or_else(|| "–".into())),
                Cell::from(acc(EvalKind::Knn)),
                Cell::from(acc(EvalKind::Linear)),
                Cell::from(c.path.display().to_string()),
            ])
            .style(t.text())
        })
        .collect();
    let widths = [
        Constraint::Length(5),
        Constraint::Length(8),
        Constraint::Length(19),
        Constraint::Length(10),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Min(10),
    ];
    let header = Row::new(["epoch", "iter", "time (UTC)", "size", "loss", "k-NN", "linear", "path"]).style(t.title());
    let table = Table::new(rows, widths).header(header).row_highlight_style(t.selected()).column_spacing(1);
    // Table state is a drawing-time scratch value here: selection lives in `App`.
    let mut state = TableState::default().with_selected(Some(app.checkpoint_tab.selected.min(app.checkpoint_tab.rows.len() - 1)));
    frame.render_stateful_widget(table, table_area, &mut state);
}

/// The newest result of `kind` on the weights of iteration `iter`.
fn accuracy_at(app: &App, kind: EvalKind, iter: usize) -> Option<f64> {
    app.eval_tab.records.iter().rev().find(|r| r.kind == kind && r.iter == Some(iter)).and_then(|r| r.top1)
}
