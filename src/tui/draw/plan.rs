//! The run's plan in one line above the Schedules tab's charts: its length in steps, the teacher
//! EMA's half-life and the warm-ups against it, so a plan that cannot work (a half-life or a
//! warm-up as long as the run) shows before its curves do.

use crate::config::recipe::ema_half_life;
use crate::protocol::schedule::{CurveSpec, ScheduleName};
use crate::tui::app::App;
use ratatui::text::{Line, Span};

/// The plan's items, most important first, and whether the plan is known to fail; None before
/// the trainer has said how long the run is.
pub fn items(app: &App) -> Option<(Vec<String>, bool)> {
    let info = app.trainer.info.as_ref()?;
    let niter = info.niter_per_ep;
    let steps = info.epochs * niter;
    let warm = |name| match app.schedule(name).map(|c| c.schedule.spec) {
        Some(CurveSpec::Cosine { warmup_epochs, .. } | CurveSpec::WarmupConstant { warmup_epochs, .. }) => warmup_epochs * niter,
        None => 0,
    };
    let momentum = app.schedule(ScheduleName::Momentum)?.values.first().copied()? as f64;
    let half = ema_half_life(momentum);
    let pct = |n: f64| if steps == 0 { 0.0 } else { 100.0 * n / steps as f64 };
    let (lr, temp) = (warm(ScheduleName::Lr), warm(ScheduleName::TeacherTemp));
    let bad = half > steps as f64 || lr >= steps.max(1) || temp >= steps.max(1);
    let items = vec![
        format!("{steps} steps"),
        format!("EMA half-life {half:.0} ({:.0}%)", pct(half)),
        format!("lr warm-up {lr} ({:.0}%)", pct(lr as f64)),
        format!("temp warm-up {temp} ({:.0}%)", pct(temp as f64)),
        format!("{} images", info.num_images),
        format!("out_dim {}", info.out_dim),
    ];
    Some((items, bad))
}

/// As many whole items as fit in `width` columns, in order: a narrow terminal drops the last
/// ones rather than cutting one in the middle.
pub fn line(app: &App, width: u16) -> Option<Line<'static>> {
    let t = &app.shell.theme;
    let (items, bad) = items(app)?;
    let mut text = String::new();
    for item in items {
        let sep = if text.is_empty() { "" } else { " · " };
        if text.chars().count() + sep.chars().count() + item.chars().count() > width as usize {
            break;
        }
        text.push_str(sep);
        text.push_str(&item);
    }
    Some(Line::from(Span::styled(text, if bad { t.warning() } else { t.muted() })))
}
