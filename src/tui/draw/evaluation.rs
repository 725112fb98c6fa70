//! The Evaluation and Outliers tabs. The evaluations themselves arrive later; until then the tabs
//! say what will appear and show whatever progress and results the trainer reports.

use super::chart::bar;
use super::key_label;
use crate::run::protocol::EvalKind;
use crate::tui::action::Action;
use crate::tui::app::App;
use crate::tui::trainer_events::eval_label;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

pub fn draw_evaluation(app: &App, frame: &mut Frame, area: Rect) {
    let hint = format!(
        "k-NN / linear results appear here; press {} / {}",
        key_label(app, Action::EvalKnn),
        key_label(app, Action::EvalLinear)
    );
    draw_results(app, frame, area, " evaluation ", &[EvalKind::Knn, EvalKind::Linear], hint);
}

pub fn draw_outliers(app: &App, frame: &mut Frame, area: Rect) {
    let hint = format!(
        "outlier scores (the images the teacher finds least typical) appear here; press {}",
        key_label(app, Action::Outliers)
    );
    draw_results(app, frame, area, " outliers ", &[EvalKind::Outliers], hint);
}

fn draw_results(app: &App, frame: &mut Frame, area: Rect, title: &str, kinds: &[EvalKind], hint: String) {
    let t = &app.theme;
    let block = Block::bordered().title(Span::styled(title.to_string(), t.title())).border_style(t.border());
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut lines = vec![Line::from(Span::styled(hint, t.muted())), Line::default()];
    let bar_w = (inner.width as usize).saturating_sub(30).clamp(4, 40);
    for (kind, done, total) in app.eval_progress.iter().filter(|(k, _, _)| kinds.contains(k)) {
        let f = if *total > 0 { *done as f64 / *total as f64 } else { 0.0 };
        lines.push(Line::from(vec![
            Span::styled(format!("{:<9}", eval_label(*kind)), t.accent()),
            Span::styled(bar(bar_w, f), t.gauge()),
            Span::styled(format!(" {done}/{total}"), t.text()),
        ]));
    }
    for r in app.evals.iter().rev().filter(|r| kinds.contains(&r.kind)) {
        let at = r.iter.map(|i| format!("it {i:>7}  ")).unwrap_or_default();
        lines.push(Line::from(vec![
            Span::styled(at, t.muted()),
            Span::styled(format!("{:<9}", eval_label(r.kind)), t.accent()),
            Span::styled(r.summary.clone(), t.text()),
        ]));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}
