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
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

pub fn draw_evaluation(app: &App, frame: &mut Frame, area: Rect) {
    let hint = format!(
        "{} k-NN / {} linear probe of the live teacher (of the selected checkpoint on the Checkpoints tab)",
        key_label(app, Action::EvalKnn),
        key_label(app, Action::EvalLinear)
    );
    let kinds = [EvalKind::Knn, EvalKind::Linear];
    let charted = app.eval_tab.records.iter().filter(|r| r.top1.is_some() && r.epoch.is_some()).count();
    if charted == 0 || area.height < 14 {
        draw_results(app, frame, area, " evaluation ", &kinds, hint);
        return;
    }
    let [chart_area, list_area] = Layout::vertical([Constraint::Percentage(60), Constraint::Min(5)]).areas(area);
    draw_accuracy_chart(app, frame, chart_area);
    draw_results(app, frame, list_area, " evaluation ", &kinds, hint);
}

/// Top-1 against epoch, one line per kind, over every evaluation of the run.
fn draw_accuracy_chart(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.shell.theme;
    let points = |kind: EvalKind| -> Vec<(f64, f64)> {
        let mut p: Vec<(f64, f64)> =
            app.eval_tab.records.iter().filter(|r| r.kind == kind).filter_map(|r| Some((r.epoch? as f64, r.top1?))).collect();
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        p
    };
    let (knn, linear) = (points(EvalKind::Knn), points(EvalKind::Linear));
    let last = |p: &[(f64, f64)]| p.last().map(|(_, y)| format!("{y:.1}%")).unwrap_or_else(|| "–".into());
    let knn_style = t.series(t.palette.accent);
    let linear_style = t.series(t.palette.ok);
    let title = Line::from(vec![
        Span::styled(" top-1 vs epoch  ", t.title()),
        Span::styled(format!("• k-NN {} ", last(&knn)), knn_style),
        Span::styled(format!(" █ linear {} ", last(&linear)), linear_style),
    ]);
    let block = Block::bordered().title(title).border_style(t.border());
    let max_epoch = knn.iter().chain(&linear).map(|p| p.0).fold(0.0, f64::max);
    let epochs = app.trainer.info.as_ref().map(|r| r.epochs as f64).unwrap_or(0.0).max(max_epoch);
    // Markers the title names tell the two apart without colour, and show a single evaluation.
    let series = [(knn, knn_style, Marker::Dot), (linear, linear_style, Marker::Block)]
        .into_iter()
        .filter(|(p, _, _)| !p.is_empty())
        .map(|(points, style, marker)| ChartSeries { points, style, marker })
        .collect();
    chart::render(
        frame,
        area,
        ChartSpec {
            block,
            series,
            x_bounds: [0.0, epochs],
            labels: true,
            y_fmt: |y| format!("{y:.0}%"),
            marker_x: None,
            axis_style: t.muted(),
        },
    );
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
