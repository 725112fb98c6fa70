//! The Checkpoints tab: every checkpoint of the run, newest first, with the k-NN and linear
//! accuracy of its weights, the change against the previous evaluated checkpoint and against
//! random weights of the same architecture, and whether its file is still there. Columns that do
//! not fit are dropped, least useful first, rather than every column being cut.

use super::key_label;
use crate::protocol::{CheckpointInfo, EvalKind};
use crate::tui::action::Action;
use crate::tui::app::{App, FileState};
use crate::tui::format::{fmt_bytes, fmt_utc, fmt_value};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

/// One column: its header, width (the last one takes what is left), and rank (1 is kept longest).
struct Column {
    header: &'static str,
    width: u16,
    rank: u8,
    cell: fn(&RowData) -> String,
}

/// What a row shows, computed once per frame.
struct RowData<'a> {
    c: &'a CheckpointInfo,
    state: FileState,
    kept: bool,
    knn: Option<f64>,
    linear: Option<f64>,
    /// k-NN of the previous (older) evaluated checkpoint.
    prev_knn: Option<f64>,
    baseline: Option<f64>,
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into())
}

fn delta(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:+.1}", a - b),
        _ => "–".into(),
    }
}

const COLUMNS: [Column; 11] = [
    // The checkpoint's own `epoch` (the reference's): epochs done, hence the plural.
    Column { header: "epochs", width: 6, rank: 1, cell: |r| r.c.epoch.to_string() },
    Column { header: "iter", width: 8, rank: 3, cell: |r| r.c.iter.to_string() },
    Column {
        header: "file",
        width: 5,
        rank: 1,
        cell: |r| {
            match (r.state, r.kept) {
                (FileState::Gone, _) => "gone",
                (FileState::Replaced, _) => "repl.",
                (FileState::Present, true) => "keep",
                (FileState::Present, false) => "",
            }
            .into()
        },
    },
    Column { header: "k-NN", width: 6, rank: 1, cell: |r| pct(r.knn) },
    Column { header: "Δprev", width: 6, rank: 4, cell: |r| delta(r.knn, r.prev_knn) },
    Column { header: "Δrand", width: 6, rank: 2, cell: |r| delta(r.knn, r.baseline) },
    Column { header: "linear", width: 6, rank: 2, cell: |r| pct(r.linear) },
    Column { header: "size", width: 10, rank: 6, cell: |r| fmt_bytes(r.c.bytes) },
    Column { header: "loss", width: 7, rank: 5, cell: |r| r.c.loss.map(fmt_value).unwrap_or_else(|| "–".into()) },
    Column { header: "time (UTC)", width: 19, rank: 7, cell: |r| fmt_utc(r.c.time) },
    Column {
        header: "path",
        width: 16,
        rank: 8,
        cell: |r| r.c.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    },
];

/// The columns that fit in `width`, in display order: dropped by rank, highest first.
fn fitting(width: u16) -> Vec<&'static Column> {
    let mut shown: Vec<&Column> = COLUMNS.iter().collect();
    let need = |cols: &[&Column]| cols.iter().map(|c| c.width + 1).sum::<u16>();
    while need(&shown) > width && shown.len() > 1 {
        let worst = shown.iter().enumerate().max_by_key(|(i, c)| (c.rank, *i)).map(|(i, _)| i).unwrap_or(0);
        shown.remove(worst);
    }
    shown
}

pub fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.shell.theme;
    let tab = &app.checkpoint_tab;
    let disk = tab.disk_bytes.map(|b| format!(", {} on disk", fmt_bytes(b))).unwrap_or_default();
    let block =
        Block::bordered().title(Span::styled(format!(" checkpoints ({}{disk}) ", tab.rows.len()), t.title())).border_style(t.border());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [table_area, hint_area] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
    let keys = [
        (Action::EvalKnn, "k-NN"),
        (Action::EvalLinear, "linear"),
        (Action::EvalAll, "all"),
        (Action::MarkKeep, "keep"),
        (Action::Checkpoint, "checkpoint now"),
        (Action::CopyPath, "copy path"),
    ];
    let mut hint = vec![];
    for (a, what) in keys {
        hint.push(Span::styled(key_label(app, a), t.accent()));
        hint.push(Span::styled(format!(" {what}  "), t.muted()));
    }
    frame.render_widget(Paragraph::new(Line::from(hint)), hint_area);
    if tab.rows.is_empty() {
        let msg = format!("no checkpoints yet; press {} to write one", key_label(app, Action::Checkpoint));
        frame.render_widget(Paragraph::new(Span::styled(msg, t.muted())), table_area);
        return;
    }
    let data = rows(app);
    let cols = fitting(table_area.width);
    let table_rows: Vec<Row> = data
        .iter()
        .rev()
        .map(|r| {
            let style = if r.state == FileState::Present { t.text() } else { t.muted() };
            Row::new(cols.iter().map(|c| Cell::from((c.cell)(r))).collect::<Vec<_>>()).style(style)
        })
        .collect();
    let widths: Vec<Constraint> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| if i + 1 == cols.len() { Constraint::Min(c.width) } else { Constraint::Length(c.width) })
        .collect();
    let header = Row::new(cols.iter().map(|c| c.header).collect::<Vec<_>>()).style(t.title());
    let table = Table::new(table_rows, widths).header(header).row_highlight_style(t.selected()).column_spacing(1);
    // Table state is a drawing-time scratch value here: selection lives in `App`.
    let mut state = TableState::default().with_selected(Some(tab.selected.min(tab.rows.len() - 1)));
    frame.render_stateful_widget(table, table_area, &mut state);
}

/// Every row's figures, oldest first.
fn rows(app: &App) -> Vec<RowData<'_>> {
    let records = &app.eval_tab.records;
    let newest = |kind: EvalKind, c: &CheckpointInfo| records.iter().rev().find(|r| r.kind == kind && r.is_of(c)).and_then(|r| r.top1);
    let baseline = records.iter().rev().find(|r| r.kind == EvalKind::Knn && r.random).and_then(|r| r.top1);
    let mut prev_knn = None;
    let tab = &app.checkpoint_tab;
    tab.rows
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let knn = newest(EvalKind::Knn, c);
            let kept = c.content_id.as_ref().is_some_and(|id| tab.kept.contains(id));
            let row = RowData { c, state: tab.file_state(i), kept, knn, linear: newest(EvalKind::Linear, c), prev_knn, baseline };
            if knn.is_some() {
                prev_knn = knn;
            }
            row
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_tables_drop_the_least_useful_columns_first() {
        let all: u16 = COLUMNS.iter().map(|c| c.width + 1).sum();
        assert_eq!(fitting(all).len(), COLUMNS.len());
        let narrow: Vec<&str> = fitting(40).iter().map(|c| c.header).collect();
        assert!(narrow.contains(&"epochs") && narrow.contains(&"k-NN") && narrow.contains(&"file"), "{narrow:?}");
        assert!(!narrow.contains(&"path") && !narrow.contains(&"time (UTC)"), "{narrow:?}");
        assert!(fitting(40).iter().map(|c| c.width + 1).sum::<u16>() <= 40);
    }
}
