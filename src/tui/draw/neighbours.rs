//! The Outliers tab's neighbour list (`n`, `/`): the images of the split most like a query, with
//! their similarity, class and path, in place of the report's rows; and the `/` prompt's line.

use super::key_label;
use crate::tui::action::Action;
use crate::tui::app::App;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

/// The path in `width` columns, its end kept.
fn tail(path: &str, width: usize) -> String {
    let n = path.chars().count();
    if n <= width {
        return path.to_string();
    }
    format!("…{}", path.chars().skip(n + 1 - width.max(1)).collect::<String>())
}

pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.shell.theme;
    let v = &app.outliers;
    let Some(search) = &v.finder.search else { return };
    let root = v.data_root.as_deref();
    let relative = |p: &std::path::Path| root.and_then(|r| p.strip_prefix(r).ok()).unwrap_or(p).display().to_string();
    let query = relative(&search.query);
    let found = v.lens.neighbours.as_ref().filter(|n| n.query == search.query);
    let title = match found {
        Some(n) => format!(" {} nearest in {} · ckpt {} ", n.hits.len(), n.split, n.checkpoint),
        None => " nearest images ".to_string(),
    };
    let block = Block::bordered().title(Span::styled(title, t.title())).border_style(t.border());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [query_area, table_area, hint_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1), Constraint::Length(1)]).areas(inner);
    let width = inner.width as usize;
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("query ", t.muted()),
            Span::styled(tail(&query, width.saturating_sub(6)), t.accent()),
        ])),
        query_area,
    );
    let hint = Line::from(vec![
        Span::styled(key_label(app, Action::Neighbours), t.accent()),
        Span::styled(" its neighbours  ", t.muted()),
        Span::styled(key_label(app, Action::EvalAll), t.accent()),
        Span::styled(" attention  ", t.muted()),
        Span::styled(key_label(app, Action::Cancel), t.accent()),
        Span::styled(" back to the report", t.muted()),
    ]);
    frame.render_widget(Paragraph::new(hint).wrap(Wrap { trim: true }), hint_area);
    if found.is_none() {
        let text = match (&v.lens.neighbours_error, &v.lens.neighbours_pending) {
            (Some(e), _) => Span::styled(format!("no neighbours: {e}"), t.warning()),
            (None, Some(_)) => Span::styled("computing the split's features…", t.muted()),
            (None, None) => Span::styled("no answer", t.muted()),
        };
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), table_area);
        return;
    }
    let hits = v.hits();
    let label_width = hits.iter().map(|h| h.label.chars().count()).max().unwrap_or(5).clamp(5, 14) as u16;
    let path_width = (table_area.width as usize).saturating_sub(4 + 7 + label_width as usize + 3);
    let rows: Vec<Row> = hits
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let shown = relative(&h.path);
            Row::new([
                Cell::from(format!("{}", i + 1)),
                Cell::from(format!("{:.3}", h.similarity)),
                Cell::from(h.label.clone()),
                Cell::from(tail(&shown, path_width)),
            ])
        })
        .collect();
    let header = Row::new(["#", "cosine", "label", "path"]).style(t.muted());
    let widths = [Constraint::Length(3), Constraint::Length(6), Constraint::Length(label_width), Constraint::Min(10)];
    let table = Table::new(rows, widths).header(header).row_highlight_style(t.selected()).highlight_symbol("▶");
    let mut state = TableState::default().with_selected(Some(search.selected));
    frame.render_stateful_widget(table, table_area, &mut state);
}

/// `/`'s line over the bottom of `area`, while a path is typed.
pub fn draw_prompt(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.shell.theme;
    let Some(typed) = &app.outliers.finder.prompt else { return };
    let line_area = Rect { y: area.y + area.height.saturating_sub(2), height: 1, x: area.x + 1, width: area.width.saturating_sub(2) };
    let width = line_area.width as usize;
    let line = Line::from(vec![
        Span::styled("image file: ", t.accent()),
        Span::styled(format!("{}█", tail(typed, width.saturating_sub(14))), t.text()),
    ]);
    frame.render_widget(Paragraph::new(line).style(t.base()), line_area);
}
