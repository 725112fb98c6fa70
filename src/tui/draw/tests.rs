//! Rendering tests on ratatui's `TestBackend`: snapshots of each tab, the edit form and a
//! stopped run at 60x20, 80x24 and 160x48 from a recorded run, and no panic at any size.

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
    for (w, h) in SIZES {
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), render(&app, w, h));
    }
}

/// The sizes every screen is checked at: a small split pane, the classic terminal, a big one.
const SIZES: [(u16, u16); 3] = [(60, 20), (80, 24), (160, 48)];

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
    for (w, h) in SIZES {
        let screen = render(&app, w, h);
        // Focus shows without colour, and the hint is whole.
        assert!(screen.contains("▶ value"), "{screen}");
        assert!(screen.contains("close"), "hint cut at {w}x{h}\n{screen}");
        insta::assert_snapshot!(format!("schedules_preview_{w}x{h}"), screen);
    }
}

#[test]
fn stopped_run_snapshots_say_what_the_keys_do() {
    use crate::protocol::{Event, RunState};
    let (mut app, _rx) = fixtures::app(300);
    app.shell.can_relaunch = true;
    crate::tui::trainer_events::apply_event(&mut app, Event::State { state: RunState::Stopped, iter: 300 });
    app.shell.status = None;
    for (w, h) in SIZES {
        let screen = render(&app, w, h);
        assert!(!screen.contains("ETA"), "a stopped run has no ETA\n{screen}");
        assert!(screen.contains("stopped at it 300"), "{screen}");
        insta::assert_snapshot!(format!("stopped_{w}x{h}"), screen);
    }
    let wide = render(&app, 160, 48);
    assert!(wide.contains("p continues it in the background") && wide.contains("q quits"), "{wide}");
    app.shell.tab = Tab::Log;
    let log = render(&app, 80, 24);
    assert!(log.contains("it     300 info  stopped at it 300 (epoch 5)"), "{log}");
}

#[test]
fn one_numbering_in_the_header_and_the_log() {
    use crate::protocol::{Event, RunState};
    let (mut app, _rx) = fixtures::app(57);
    crate::tui::trainer_events::apply_event(&mut app, Event::State { state: RunState::Paused, iter: 57 });
    let dash = render(&app, 120, 30);
    // 57 iterations done (0..=56), in epoch 1 (iterations 50..=99), 0-based like log.txt.
    assert!(dash.contains("epoch 1/10") && dash.contains("it 57/500"), "{dash}");
    assert!(dash.contains("paused at it 57"), "the footer gives the outcome\n{dash}");
    app.shell.tab = Tab::Log;
    let log = render(&app, 120, 30);
    assert!(log.contains("it      57 info  paused at it 57 (epoch 1)"), "{log}");
    assert!(log.contains("it      50 info  epoch 0 done"), "{log}");
}

#[test]
fn the_footer_offers_resume_on_a_paused_run() {
    use crate::protocol::{Event, RunState};
    let (mut app, _rx) = fixtures::app(57);
    let running = render(&app, 120, 30);
    assert!(running.lines().last().is_some_and(|l| l.contains("p pause")), "{running}");
    crate::tui::trainer_events::apply_event(&mut app, Event::State { state: RunState::Paused, iter: 57 });
    app.shell.status = None;
    let paused = render(&app, 120, 30);
    let footer = paused.lines().last().unwrap_or_default();
    assert!(footer.contains("p resume") && !footer.contains("pause "), "{paused}");
}

#[test]
fn an_evaluation_asked_for_on_another_tab_shows_its_progress_in_the_footer() {
    use crate::protocol::{EvalKind, Event};
    let (mut app, _rx) = fixtures::app(57);
    app.shell.tab = Tab::Checkpoints;
    app.shell.status = Some("linear evaluation of checkpoint0030.json requested".into());
    crate::tui::trainer_events::apply_event(&mut app, Event::EvalProgress { kind: EvalKind::Linear, done: 150, total: 200 });
    let screen = render(&app, 120, 30);
    assert!(screen.lines().last().is_some_and(|l| l.contains("requested · linear 75 %")), "{screen}");
}

#[test]
fn long_log_entries_wrap_instead_of_being_cut() {
    let (mut app, _rx) = fixtures::app(10);
    let long = format!("key file keys.toml: unknown action `foo_bar` {}", "and more words ".repeat(8));
    app.log_line(crate::tui::log_view::LogLevel::Error, long.trim().to_string());
    app.shell.tab = Tab::Log;
    let screen = render(&app, 60, 20);
    assert!(screen.contains("and more words and more words") && screen.contains("foo_bar"), "{screen}");
    let tail: String = screen.lines().rev().find(|l| l.contains("words")).unwrap_or_default().to_string();
    assert!(tail.contains("words"), "{screen}");
}

#[test]
fn help_second_page_lists_every_action_name() {
    let (mut app, _rx) = fixtures::app(10);
    update(&mut app, Action::Help);
    crate::tui::update::handle_key(&mut app, crossterm::event::KeyEvent::from(crossterm::event::KeyCode::Char('?')));
    assert!(app.shell.help && app.shell.help_page == 1);
    let screen = render(&app, 120, 40);
    for a in Action::all() {
        assert!(screen.contains(a.name()), "{} missing\n{screen}", a.name());
    }
    insta::assert_snapshot!("help_names_80x24", render(&app, 80, 24));
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
    // 500 iterations planned: four steps in, 500 / 4^4 is under the 10-iteration floor.
    assert!(screen.contains("last 10 it") && screen.contains("log") && screen.contains("FROZEN"), "{screen}");
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

/// The table's header row (the line holding `path`).
fn header_of(screen: &str) -> String {
    screen.lines().find(|l| l.contains(" path")).unwrap_or_default().to_string()
}

#[test]
fn outliers_with_a_report_snapshot() {
    let (mut app, _rx) = fixtures::app(300);
    let _data = fixtures::with_outliers(&mut app);
    app.shell.tab = Tab::Outliers;
    for (w, h) in SIZES {
        let screen = render(&app, w, h);
        assert!(screen.contains("train/ship/0004.png"), "the most disagreeing image first\n{screen}");
        assert!(w < 80 || screen.contains("half-blocks"), "{screen}");
        assert!(w < 80 || screen.contains('▀') || screen.contains('▄'), "the preview is drawn\n{screen}");
        // Whole columns or none: the sorting score's values whole, no kind cut to "mi".
        let header = header_of(&screen);
        assert!(header.contains("auto") && header.contains("path"), "the sort's score and the path stay at {w}x{h}\n{screen}");
        assert!(screen.contains("1.000"), "scores whole at {w}x{h}\n{screen}");
        assert!(!header.contains(" mi ") && !header.contains(" ki "), "no column cut at {w}x{h}\n{header}");
        insta::assert_snapshot!(format!("outliers_report_{w}x{h}"), screen);
    }
    // Sorted by another score, that score's column is the one kept.
    update(&mut app, Action::ToggleScore);
    let header = header_of(&render(&app, 60, 20));
    assert!(header.contains("mislab") && header.contains("path"), "{header}");
}

/// Weak features: the report's line says so, and neither the row nor the kind filter calls any
/// image a likely label error (the fixture's image 4 has a `suggested` class in its CSV).
#[test]
fn outliers_on_weak_features_make_no_label_error_claim() {
    let (mut app, _rx) = fixtures::app(300);
    let _data = fixtures::with_outliers(&mut app);
    app.shell.tab = Tab::Outliers;
    let strong = render(&app, 160, 48);
    assert!(strong.contains("likely label error: truck") && strong.contains("label errors claimed"), "{strong}");
    app.outliers.evidence =
        Some(crate::eval::evidence::FeatureEvidence { knn: 50.1, random: Some(48.0), chance: 25.0, images: 1000, folds: 5, k: 10 });
    update(&mut app, Action::CycleKind);
    assert_eq!(app.outliers.kind.as_deref(), Some("mislabel"));
    for (w, h) in SIZES {
        let screen = render(&app, w, h);
        assert!(!screen.contains("likely label error"), "{screen}");
        // Wrapped on a narrow list: "no" may end the line before.
        assert!(screen.contains("label-error claim") && !screen.contains("label errors claimed"), "{w}x{h}\n{screen}");
    }
    let wide = render(&app, 160, 48);
    assert!(wide.contains("k-NN 50.1 % vs random 48.0 %"), "{wide}");
    assert!(wide.contains("kind mislabel side (no label-error claim)"), "{wide}");
    // With the claim, the filter keeps only the likely label errors.
    let _again = fixtures::with_outliers(&mut app);
    app.outliers.kind = Some("mislabel".into());
    assert_eq!(app.outliers.visible().len(), 1, "only image 4");
    assert_eq!(app.outliers.kind_name(), "likely label errors");
}

/// A wide terminal gets a bigger preview (encoded again on the resize), and a neighbour in a deep
/// folder keeps to its line, its file name shown.
#[test]
fn outliers_preview_grows_with_the_terminal_and_long_paths_keep_to_one_line() {
    let (mut app, _rx) = fixtures::app(300);
    let _data = fixtures::with_outliers(&mut app);
    app.shell.tab = Tab::Outliers;
    let deep = "train/ship/a/very/deep/folder/of/images/that/goes/on/and/on/and/on/0001.png";
    for r in app.outliers.rows.iter_mut() {
        r.neighbours = format!("{deep};train/ship/0002.png");
    }
    let narrow = render(&app, 160, 48);
    app.resize(220, 60);
    assert!(app.outliers.preview_cells.width > 24, "{:?}", app.outliers.preview_cells);
    assert!(app.outliers.preview.is_some(), "re-encoded for the new size");
    let wide = render(&app, 220, 60);
    let half_blocks = |s: &str| s.chars().filter(|c| matches!(c, '▀' | '▄')).count();
    assert!(half_blocks(&wide) > 2 * half_blocks(&narrow), "preview\n{wide}");
    for screen in [&narrow, &wide] {
        let line = screen.lines().find(|l| l.contains("0001.png") && l.contains('…')).unwrap_or_else(|| panic!("{screen}"));
        assert!(line.contains("…/and/on/0001.png") || line.contains("on/0001.png"), "{line}");
        assert!(!screen.lines().any(|l| l.contains("train/ship/a/very")), "the path's start is cut, not wrapped\n{screen}");
    }
    insta::assert_snapshot!("outliers_report_220x60", wide);
}

/// A reviewed run: six checkpoints (two removed by retention, one kept), k-NN of four of them by
/// content id, a linear probe, and the random-weights baseline.
fn reviewed_run() -> App {
    use crate::protocol::{CheckpointInfo, EvalKind, Event};
    use crate::tui::app::FileState;
    use crate::tui::trainer_events::apply_event;
    let (mut app, _rx) = fixtures::app(0);
    for (i, e) in (1..=6).enumerate() {
        let id = format!("c0ffee{e:06}");
        apply_event(
            &mut app,
            Event::CheckpointSaved(CheckpointInfo {
                path: format!("runs/demo/checkpoints/checkpoint-it{:08}.json", e * 100).into(),
                epoch: e,
                iter: e * 100,
                bytes: 15_500_000,
                loss: Some(7.0 - e as f64 * 0.3),
                time: 1_796_000_000.0 + e as f64 * 60.0,
                content_id: Some(id.clone()),
            }),
        );
        if e % 2 == 1 || e == 6 {
            let top1 = 40.0 + 3.0 * e as f64;
            let json = serde_json::json!({"kind": "knn", "epoch": e, "iter": e * 100, "content_id": id, "num_classes": 5,
                "results": [{"k": 10, "top1": top1 - 1.0}, {"k": 20, "top1": top1}, {"k": 100, "top1": top1 + 0.5}]});
            apply_event(&mut app, Event::EvalResult { kind: EvalKind::Knn, summary: format!("k-NN {top1}"), json });
        }
        app.checkpoint_tab.files.push(if i < 2 { FileState::Gone } else { FileState::Present });
    }
    let json = serde_json::json!({"kind": "linear", "epoch": 6, "iter": 600, "content_id": "c0ffee000006", "test_acc1": 61.0});
    apply_event(&mut app, Event::EvalResult { kind: EvalKind::Linear, summary: "linear 61.0".into(), json });
    let json = serde_json::json!({"kind": "knn", "random_weights": true, "num_classes": 5,
        "results": [{"k": 10, "top1": 31.0}, {"k": 20, "top1": 33.0}, {"k": 100, "top1": 30.0}]});
    apply_event(&mut app, Event::EvalResult { kind: EvalKind::Knn, summary: "k-NN random".into(), json });
    app.checkpoint_tab.kept.insert("c0ffee000003".into());
    app.checkpoint_tab.disk_bytes = Some(62_000_000);
    app
}

#[test]
fn checkpoint_history_shows_files_deltas_and_the_baseline() {
    let mut app = reviewed_run();
    app.shell.tab = Tab::Checkpoints;
    for (w, h) in SIZES {
        insta::assert_snapshot!(format!("checkpoint_history_{w}x{h}"), render(&app, w, h));
    }
    let wide = render(&app, 160, 48);
    // Epoch 6: k-NN 58.0, +3.0 over epoch 5's 55.0, +25.0 over random weights; epochs 1-2 are gone.
    let row = |epoch: &str| wide.lines().find(|l| l.starts_with(&format!("\"│{epoch} "))).unwrap_or_default().to_string();
    let six = row("6");
    assert!(six.contains("58.0") && six.contains("+3.0") && six.contains("+25.0") && six.contains("61.0"), "{wide}");
    assert!(row("1").contains("gone") && row("2").contains("gone") && row("3").contains("keep"), "{wide}");
    assert!(wide.contains("59.1 MiB on disk"), "{wide}");
    // A gone row cannot be evaluated, and says why.
    app.checkpoint_tab.selected = 5;
    update(&mut app, Action::EvalKnn);
    assert!(app.shell.status.as_deref().is_some_and(|s| s.contains("its file is gone")), "{:?}", app.shell.status);
}

#[test]
fn evaluation_tab_charts_levels_and_a_table_per_k() {
    let mut app = reviewed_run();
    app.shell.tab = Tab::Evaluation;
    for (w, h) in [(80, 24), (160, 48)] {
        insta::assert_snapshot!(format!("evaluation_review_{w}x{h}"), render(&app, w, h));
    }
    let wide = render(&app, 160, 48);
    assert!(wide.contains("random 33.0%") && wide.contains("chance 20.0%"), "{wide}");
    assert!(wide.contains("k=10") && wide.contains("k=100") && wide.contains("random weights"), "{wide}");
    let six = wide.lines().find(|l| l.contains("epoch 6 (it 600)")).unwrap_or_default();
    assert!(six.contains("57.0") && six.contains("58.0") && six.contains("58.5") && six.contains("61.0"), "{wide}");
}

/// A student's k-NN of a checkpoint (`dino eval knn --checkpoint_key student`) gets a row of its
/// own in the per-k table and is neither the checkpoint's result nor a point of the curve.
#[test]
fn a_students_result_is_listed_apart_from_the_teachers() {
    use crate::protocol::{EvalKind, Event};
    use crate::tui::trainer_events::apply_event;
    let mut app = reviewed_run();
    let json = serde_json::json!({"kind": "knn", "epoch": 6, "iter": 600, "content_id": "c0ffee000006", "network": "student",
        "num_classes": 5, "results": [{"k": 20, "top1": 71.5}]});
    apply_event(&mut app, Event::EvalResult { kind: EvalKind::Knn, summary: "k-NN 71.5".into(), json });
    app.shell.tab = Tab::Checkpoints;
    let history = render(&app, 160, 48);
    let six = history.lines().find(|l| l.starts_with("\"│6 ")).unwrap_or_default();
    assert!(six.contains("58.0") && !six.contains("71.5"), "{history}");
    app.shell.tab = Tab::Evaluation;
    let wide = render(&app, 160, 48);
    let student = wide.lines().find(|l| l.contains("epoch 6 (it 600), student")).unwrap_or_default();
    assert!(student.contains("71.5"), "{wide}");
    let teacher = wide.lines().find(|l| l.contains("epoch 6 (it 600)") && !l.contains("student")).unwrap_or_default();
    assert!(teacher.contains("58.0") && !teacher.contains("71.5"), "{wide}");
    let status = app.shell.status.clone().unwrap_or_default();
    assert!(status.contains("(student) 71.5%") && !status.contains("vs previous"), "{status}");
}

#[test]
fn attached_view_shows_the_trainers_resources_beside_its_own() {
    let (mut app, _rx) = fixtures::app(300);
    // As `dino attach` receives them: another process's CPU, memory, threads and GPU.
    app.trainer.process = Some(crate::protocol::ProcessSample {
        pid: u32::MAX,
        cpu_percent: 187.5,
        rss: 534 << 20,
        threads: 23,
        gpu_mem: Some(3 << 30),
        gpu_util: Some(71),
    });
    let screen = render(&app, 160, 48);
    assert!(screen.contains("trainer") && screen.contains("188% cpu 534.0 MiB 23 threads gpu 3.0 GiB 71%"), "{screen}");
    assert!(screen.contains("viewer"), "the viewer's own memory, labelled as such");
    insta::assert_snapshot!("dashboard_attached_160x48", screen);
}

/// `a` on the Outliers tab: the preview shows the network's attention over the image (here a
/// random tiny ViT's, computed for real), its title names the view, the side says which of how
/// many and how to step, and `→` steps to the first head.
#[test]
fn outliers_attention_lens_snapshot() {
    use crate::model::{Backbone, BackboneSpec, VitSpec};
    let (mut app, _rx) = fixtures::app(300);
    let _data = fixtures::with_outliers(&mut app);
    app.shell.tab = Tab::Outliers;
    app.outliers.refresh_preview();
    let image = app.outliers.absolute(&app.outliers.selected_row().expect("a row").path);
    tch::manual_seed(0);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let spec = VitSpec { img_size: 16, patch_size: 4, embed_dim: 24, depth: 1, num_heads: 2, mlp_ratio: 4.0, drop_path_rate: 0.0 };
    let vit = Backbone::new(vs.root(), &BackboneSpec::Vit(spec));
    let views = crate::tui::lens::draw_views(&vit, 16, &image).expect("views of the fixture image");
    assert_eq!(views.len(), 4, "mean, 2 heads, PCA");
    let plain = render(&app, 160, 48);
    app.outliers.lens.on = true;
    app.outliers.lens.current = Some(std::sync::Arc::new(crate::tui::lens::Pictures { image, checkpoint: "0123abcd".into(), views }));
    app.outliers.refresh_preview();
    for (w, h) in [(80, 24), (160, 48)] {
        let screen = render(&app, w, h);
        assert!(screen.contains("attention, mean"), "the title names the view at {w}x{h}\n{screen}");
        assert!(screen.contains("view 1/4"), "{w}x{h}\n{screen}");
        insta::assert_snapshot!(format!("outliers_attention_{w}x{h}"), screen);
    }
    assert_ne!(render(&app, 160, 48), plain, "the preview changed");
    update(&mut app, Action::Right);
    let screen = render(&app, 160, 48);
    assert!(screen.contains("attention, head 0") && screen.contains("view 2/4"), "{screen}");
    assert_eq!(app.outliers.class, None, "→ steps the lens, not the class filter");
}

/// `n`: the neighbour list replaces the report's rows (rank, cosine, label, path), the preview
/// shows the selected neighbour, `↓` moves down the list and `esc` goes back to the report.
#[test]
fn outliers_neighbour_view_snapshot() {
    use crate::tui::lens::{Hit, Neighbours};
    let (mut app, _rx) = fixtures::app(300);
    let _data = fixtures::with_outliers(&mut app);
    app.shell.tab = Tab::Outliers;
    let query = app.outliers.absolute(&app.outliers.selected_row().expect("a row").path);
    let hits = (0..6)
        .map(|i| {
            let rel = format!("train/{}/{:04}.png", ["airplane", "ship", "truck"][i % 3], i);
            Hit {
                path: app.outliers.absolute(&rel),
                label: ["airplane", "ship", "truck"][i % 3].into(),
                similarity: 0.95 - 0.05 * i as f32,
            }
        })
        .collect();
    app.outliers.finder.search = Some(crate::tui::outlier_view::Search { query: query.clone(), selected: 0 });
    app.outliers.lens.neighbours =
        Some(std::sync::Arc::new(Neighbours { query, split: "train".into(), checkpoint: "0123abcd".into(), hits }));
    app.outliers.refresh_preview();
    for (w, h) in [(80, 24), (160, 48)] {
        let screen = render(&app, w, h);
        assert!(screen.contains("6 nearest in train"), "{w}x{h}\n{screen}");
        assert!(screen.contains("0.950") && screen.contains("airplane/0000.png"), "{w}x{h}\n{screen}");
        assert!(screen.contains("query train/ship/0004.png"), "the query relative to the data set\n{screen}");
        insta::assert_snapshot!(format!("outliers_neighbours_{w}x{h}"), screen);
    }
    update(&mut app, Action::Down);
    assert_eq!(app.outliers.finder.search.as_ref().map(|s| s.selected), Some(1));
    let screen = render(&app, 160, 48);
    assert!(screen.contains("cosine 0.900"), "the side panel shows the second neighbour\n{screen}");
    update(&mut app, Action::Cancel);
    assert!(app.outliers.finder.search.is_none());
    assert!(render(&app, 160, 48).contains("train/ship/0004.png"), "back to the report");
}
