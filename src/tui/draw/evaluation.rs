//! The Evaluation and Outliers tabs: progress of a running evaluation, every result of the run
//! newest first, and (Evaluation) the accuracy of every evaluation charted against epoch.

use super::chart::{self, bar, ChartSeries, ChartSpec};
use super::key_label;
use crate::protocol::EvalKind;
use crate::tui::action::Action;
use crate::tui::app::App;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

pub fn draw_evaluation(app: &App, frame: &mut Frame, area: Rect) {
    let hint = format!(
        "{} k-NN / {} linear probe of the live teacher (of the selected checkpoint on the Checkpoints tab); {} every checkpoint",
        key_label(app, Action::EvalKnn),
        key_label(app, Action::EvalLinear),
        key_label(app, Action::EvalAll)
    );
    let kinds = [EvalKind::Knn, EvalKind::Linear];
    let charted = app.eval_tab.records.iter().filter(|r| r.top1.is_some() && (r.epoch.is_some() || r.random)).count();
    if charted == 0 || area.height < 14 {
        draw_results(app, frame, area, " evaluation ", &kinds, hint);
        return;
    }
    let table = per_k_table(app);
    let table_h = (table.len() as u16 + 3).min(area.height / 3).max(4);
    let [chart_area, table_area, list_area] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Length(table_h), Constraint::Min(4)]).areas(area);
    draw_accuracy_chart(app, frame, chart_area);
    draw_per_k(app, frame, table_area, &table);
    draw_results(app, frame, list_area, " results ", &kinds, hint);
}

/// The random-weights k-NN top-1 at the headline k, and chance (100 / classes), when known.
fn levels(app: &App) -> (Option<f64>, Option<f64>) {
    let records = &app.eval_tab.records;
    let random = records.iter().rev().find(|r| r.kind == EvalKind::Knn && r.random).and_then(|r| r.top1);
    let chance = records.iter().rev().find_map(|r| r.num_classes).filter(|&n| n > 0).map(|n| 100.0 / n as f64);
    (random, chance)
}

/// Top-1 against epoch, one series per kind drawn as points joined by lines (a single
/// evaluation still shows as its marker), with the random-weights and chance levels.
fn draw_accuracy_chart(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.shell.theme;
    let points = |kind: EvalKind| -> Vec<(f64, f64)> {
        let mut p: Vec<(f64, f64)> = app
            .eval_tab
            .records
            .iter()
            .filter(|r| r.kind == kind && r.stands_for_the_run())
            .filter_map(|r| Some((r.epoch? as f64, r.top1?)))
            .collect();
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        p
    };
    let (knn, linear) = (points(EvalKind::Knn), points(EvalKind::Linear));
    let (random, chance) = levels(app);
    let last = |p: &[(f64, f64)]| p.last().map(|(_, y)| format!("{y:.1}%")).unwrap_or_else(|| "–".into());
    let knn_style = t.series(t.palette.accent);
    let linear_style = t.series(t.palette.ok);
    let mut title = vec![
        Span::styled(" top-1 vs epoch  ", t.title()),
        Span::styled(format!("• k-NN {} ", last(&knn)), knn_style),
        Span::styled(format!(" █ linear {} ", last(&linear)), linear_style),
    ];
    if let Some(r) = random {
        title.push(Span::styled(format!(" ·· random {r:.1}% "), t.muted()));
    }
    if let Some(c) = chance {
        title.push(Span::styled(format!(" ·· chance {c:.1}% "), t.muted()));
    }
    let block = Block::bordered().title(Line::from(title)).border_style(t.border());
    let max_epoch = knn.iter().chain(&linear).map(|p| p.0).fold(0.0, f64::max);
    let epochs = app.trainer.info.as_ref().map(|r| r.epochs as f64).unwrap_or(0.0).max(max_epoch);
    let x = [0.0, epochs.max(1.0)];
    let mut series = vec![];
    for y in [random, chance].into_iter().flatten() {
        series.push(ChartSeries::level(y, x, t.muted()));
    }
    // Markers the title names tell the two apart without colour, and show a single evaluation.
    for (p, style, marker) in [(knn, knn_style, Marker::Dot), (linear, linear_style, Marker::Block)] {
        if !p.is_empty() {
            series.push(ChartSeries::new(p.clone(), style));
            series.push(ChartSeries::scatter(p, style, marker));
        }
    }
    chart::render(
        frame,
        area,
        ChartSpec { block, series, x_bounds: x, labels: true, y_fmt: |y| format!("{y:.0}%"), marker_x: None, axis_style: t.muted() },
    );
}

/// One row per evaluated set of weights (newest first): k-NN top-1 at every k, and the probe.
struct TableRow {
    label: String,
    knn: Vec<(usize, f64)>,
    linear: Option<f64>,
}

fn per_k_table(app: &App) -> Vec<TableRow> {
    let mut rows: Vec<TableRow> = vec![];
    for r in app.eval_tab.records.iter().filter(|r| matches!(r.kind, EvalKind::Knn | EvalKind::Linear)) {
        let label = if r.random {
            "random weights".to_string()
        } else {
            let student = if r.student { ", student" } else { "" };
            match (r.epoch, r.iter) {
                (Some(e), Some(i)) => format!("epoch {e} (it {i}){student}"),
                _ => format!("–{student}"),
            }
        };
        let row = match rows.iter_mut().find(|x| x.label == label) {
            Some(x) => x,
            None => {
                rows.push(TableRow { label, knn: vec![], linear: None });
                let n = rows.len() - 1;
                &mut rows[n]
            }
        };
        match r.kind {
            EvalKind::Knn if !r.per_k.is_empty() => row.knn = r.per_k.clone(),
            EvalKind::Knn => row.knn = r.top1.map(|v| vec![(crate::protocol::HEADLINE_K, v)]).unwrap_or_default(),
            _ => row.linear = r.top1,
        }
    }
    rows.reverse();
    // The baseline closes the table, under the checkpoints it is compared with.
    rows.sort_by_key(|r| r.label == "random weights");
    rows
}

fn draw_per_k(app: &App, frame: &mut Frame, area: Rect, rows: &[TableRow]) {
    let t = &app.shell.theme;
    let mut ks: Vec<usize> = rows.iter().flat_map(|r| r.knn.iter().map(|(k, _)| *k)).collect();
    ks.sort_unstable();
    ks.dedup();
    let (_, chance) = levels(app);
    let title = chance.map(|c| format!(" top-1 % by k (chance {c:.1}) ")).unwrap_or_else(|| " top-1 % by k ".into());
    let mut header = vec![Cell::from("weights")];
    header.extend(ks.iter().map(|k| Cell::from(format!("k={k}"))));
    header.push(Cell::from("linear"));
    let fmt = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into());
    let body: Vec<Row> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![Cell::from(r.label.clone())];
            cells.extend(ks.iter().map(|k| Cell::from(fmt(r.knn.iter().find(|(x, _)| x == k).map(|(_, v)| *v)))));
            cells.push(Cell::from(fmt(r.linear)));
            Row::new(cells).style(if r.label == "random weights" { t.muted() } else { t.text() })
        })
        .collect();
    // As wide as the longest label ("epoch 12 (it 744), student"), within 22..=30 columns.
    let label_w = rows.iter().map(|r| r.label.chars().count()).max().unwrap_or(0).clamp(22, 30) as u16;
    let mut widths = vec![Constraint::Length(label_w)];
    widths.extend(ks.iter().map(|_| Constraint::Length(7)));
    widths.push(Constraint::Length(7));
    let table = Table::new(body, widths)
        .header(Row::new(header).style(t.title()))
        .block(Block::bordered().title(Span::styled(title, t.title())).border_style(t.border()))
        .column_spacing(1);
    frame.render_widget(table, area);
}

/// The Outliers tab before any report is loaded: how to get one, and the scoring's progress.
pub fn draw_outliers_empty(app: &App, frame: &mut Frame, area: Rect) {
    let hint = format!(
        "press {} to score the images of train/ (pretext/ without labels) with the current teacher, or run `dino outliers` on a checkpoint",
        key_label(app, Action::Outliers)
    );
    draw_results(app, frame, area, " outliers ", &[EvalKind::Outliers], hint);
}

fn draw_results(app: &App, frame: &mut Frame, area: Rect, title: &str, kinds: &[EvalKind], hint: String) {
    let t = &app.shell.theme;
    let block = Block::bordered().title(Span::styled(title.to_string(), t.title())).border_style(t.border());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut lines = vec![Line::from(Span::styled(hint, t.muted())), Line::default()];
    let bar_w = (inner.width as usize).saturating_sub(30).clamp(4, 40);
    for (kind, done, total) in app.eval_tab.progress.iter().filter(|(k, _, _)| kinds.contains(k)) {
        let f = if *total > 0 { *done as f64 / *total as f64 } else { 0.0 };
        lines.push(Line::from(vec![
            Span::styled(format!("{:<9}", kind.label()), t.accent()),
            Span::styled(bar(bar_w, f), t.gauge()),
            Span::styled(format!(" {done}/{total}"), t.text()),
        ]));
    }
    for r in app.eval_tab.records.iter().rev().filter(|r| kinds.contains(&r.kind)) {
        let at = r.iter.map(|i| format!("it {i:>7}  ")).unwrap_or_default();
        lines.push(Line::from(vec![
            Span::styled(at, t.muted()),
            Span::styled(format!("{:<9}", r.kind.label()), t.accent()),
            Span::styled(r.summary.clone(), t.text()),
        ]));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}
