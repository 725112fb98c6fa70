//! The run's plan in one line above the Schedules tab's charts: its length in steps, the teacher
//! EMA's half-life and the warm-ups against it, so a plan that cannot work (a half-life or a
//! warm-up as long as the run) shows before its curves do.

use crate::config::recipe::ema_half_life;
use crate::protocol::schedule::{CurveSpec, ScheduleName};
use crate::tui::app::App;
use ratatui::text::{Line, Span};

/// The plan's sentence, or None before the trainer has said how long the run is.
pub fn text(app: &App) -> Option<(String, bool)> {
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
    // What decides whether the plan works comes first: a narrow terminal cuts the end.
    let text = format!(
        "{steps} steps · EMA half-life {half:.0} ({:.0}%) · lr warm-up {lr} ({:.0}%) · temp warm-up {temp} ({:.0}%) · {} images · out_dim {}",
        pct(half),
        pct(lr as f64),
        pct(temp as f64),
        info.num_images,
        info.out_dim
    );
    Some((text, bad))
}

pub fn line(app: &App) -> Option<Line<'static>> {
    let t = &app.shell.theme;
    let (text, bad) = text(app)?;
    Some(Line::from(Span::styled(text, if bad { t.warning() } else { t.muted() })))
}
