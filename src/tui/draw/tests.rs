//! Rendering tests on ratatui's `TestBackend`: snapshots of each tab at two sizes from a recorded
//! run, and no panic at any size.

use super::draw;
use crate::telemetry::GpuStatus;
use crate::tui::action::Action;
use crate::tui::app::{App, Tab};
use crate::tui::fixtures;
use crate::tui::update::update;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn render(app: &App, w: u16, h: u16) -> String {
    let mut term = match Terminal::new(TestBackend::new(w, h)) {
        Ok(t) => t,
        Err(e) => match e {},
    };
    if let Err(e) = term.draw(|f| draw(app, f)) {
        match e {}
    }
    term.backend().to_string()
}

fn snapshot_tab(tab: Tab, name: &str) {
    let (mut app, _rx) = fixtures::app(300);
    app.shell.tab = tab;
    insta::assert_snapshot!(format!("{name}_80x24"), render(&app, 80, 24));
    insta::assert_snapshot!(format!("{name}_160x48"), render(&app, 160, 48));
}

#[test]
fn dashboard_snapshots() {
    snapshot_tab(Tab::Dashboard, "dashboard");
}

#[test]
fn schedules_snapshots() {
    snapshot_tab(Tab::Schedules, "schedules");
}

#[test]
fn evaluation_snapshots() {
    snapshot_tab(Tab::Evaluation, "evaluation");
}

#[test]
fn outliers_snapshots() {
    snapshot_tab(Tab::Outliers, "outliers");
}

#[test]
fn checkpoints_snapshots() {
    snapshot_tab(Tab::Checkpoints, "checkpoints");
}

#[test]
fn log_snapshots() {
    snapshot_tab(Tab::Log, "log");
}

#[test]
fn schedule_edit_preview_snapshot() {
    let (mut app, _rx) = fixtures::app(300);
    update(&mut app, Action::EditSchedule);
    for c in "2".chars() {
        app.schedule_tab.form.type_char(c);
    }
    app.schedule_tab.form.kind = 1; // scale by factor
    insta::assert_snapshot!("schedules_preview_160x48", render(&app, 160, 48));
}

#[test]
fn dashboard_without_gpu_says_so() {
    let (mut app, _rx) = fixtures::app(300);
    app.trainer.telemetry.gpus = GpuStatus::default();
    let screen = render(&app, 160, 48);
    assert!(screen.contains("no GPU (NVML not found)"), "{screen}");
    assert!(screen.contains("CPU"));
}

#[test]
fn dashboard_log_scale_and_zoom_render() {
    let (mut app, _rx) = fixtures::app(300);
    update(&mut app, Action::ToggleLogScale);
    update(&mut app, Action::ZoomIn);
    update(&mut app, Action::ZoomIn);
    update(&mut app, Action::ZoomIn);
    update(&mut app, Action::ZoomIn);
    update(&mut app, Action::Freeze);
    let screen = render(&app, 120, 40);
    assert!(screen.contains("last 100 it") && screen.contains("log") && screen.contains("FROZEN"), "{screen}");
}

#[test]
fn overlays_snapshots() {
    let (mut app, _rx) = fixtures::app(300);
    update(&mut app, Action::Help);
    insta::assert_snapshot!("help_80x24", render(&app, 80, 24));
    update(&mut app, Action::Help);
    update(&mut app, Action::Quit);
    insta::assert_snapshot!("quit_dialog_80x24", render(&app, 80, 24));
}

#[test]
fn empty_app_renders_every_tab() {
    let (tx, _rx) = crossbeam_channel::unbounded();
    let mut app = App::new(tx, crate::tui::theme::Theme::default_theme(), Default::default());
    for tab in Tab::ALL {
        app.shell.tab = tab;
        let screen = render(&app, 80, 24);
        assert!(screen.contains("1 Dash"), "{screen}");
    }
}

#[test]
fn minimum_size_draws_every_tab_and_smaller_says_too_small() {
    let (mut app, _rx) = fixtures::app(300);
    for tab in Tab::ALL {
        app.shell.tab = tab;
        let screen = render(&app, 40, 12);
        assert!(!screen.contains("too small"), "{tab:?}\n{screen}");
    }
    app.shell.help = true;
    render(&app, 40, 12);
    app.shell.help = false;
    app.shell.quit_dialog = Some(crate::tui::app::QuitChoice::Cancel);
    render(&app, 40, 12);
    app.shell.quit_dialog = None;
    let screen = render(&app, 20, 5);
    assert!(screen.contains("too small"), "{screen}");
    insta::assert_snapshot!("too_small_20x5", screen);
}

#[test]
fn no_panic_at_odd_sizes() {
    let (mut app, _rx) = fixtures::app(300);
    for tab in Tab::ALL {
        app.shell.tab = tab;
        for (w, h) in [(1, 1), (2, 1), (1, 30), (39, 12), (40, 11), (41, 13), (55, 17), (300, 5), (5, 200), (250, 80)] {
            render(&app, w, h);
        }
    }
}

#[test]
fn no_color_draws_without_colours() {
    let (mut app, _rx) = fixtures::app(300);
    app.shell.theme = app.shell.theme.clone().with_no_color(true);
    let mut term = match Terminal::new(TestBackend::new(120, 40)) {
        Ok(t) => t,
        Err(e) => match e {},
    };
    if let Err(e) = term.draw(|f| draw(&app, f)) {
        match e {}
    }
    let buf = term.backend().buffer();
    for cell in buf.content() {
        assert_eq!(cell.fg, ratatui::style::Color::Reset);
        assert_eq!(cell.bg, ratatui::style::Color::Reset);
    }
}

#[test]
fn non_finite_and_non_positive_values_draw() {
    let (mut app, _rx) = fixtures::app(0);
    let scheds = fixtures::schedules();
    for (i, loss) in [(0, f64::NAN), (1, f64::INFINITY), (2, 0.0), (3, -1.0), (4, 2.0)] {
        let mut m = fixtures::metrics(i, &scheds);
        m.loss = loss;
        m.kl = f64::NAN;
        crate::tui::trainer_events::apply_event(&mut app, crate::protocol::Event::Metrics(m));
    }
    for log in [false, true] {
        app.shell.view.log_scale = log;
        for tab in Tab::ALL {
            app.shell.tab = tab;
            render(&app, 120, 40);
            render(&app, 40, 12);
        }
    }
}

#[test]
fn outliers_with_a_report_snapshot() {
    let (mut app, _rx) = fixtures::app(300);
    let _data = fixtures::with_outliers(&mut app);
    app.shell.tab = Tab::Outliers;
    let screen = render(&app, 160, 48);
    assert!(screen.contains("train/ship/0004.png"), "the most disagreeing image first\n{screen}");
    assert!(screen.contains("half-blocks"), "{screen}");
    assert!(screen.contains('▀') || screen.contains('▄'), "the preview is drawn\n{screen}");
    insta::assert_snapshot!("outliers_report_160x48", screen);
}
