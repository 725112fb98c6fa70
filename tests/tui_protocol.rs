//! End to end through the public API: a fake trainer on its own thread sends events as JSON lines
//! (as over the control socket), the UI state folds them in, keys turn into commands the trainer
//! receives, and every tab draws.
// Test code (the lints of clippy.toml cover #[test] functions, not their helpers here): a failed
// assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use dino_tui::protocol::{Command, Event, IterMetrics, RunInfo, RunState};
use dino_tui::tui::app::Tab;
use dino_tui::tui::draw::draw;
use dino_tui::tui::trainer_events::apply_event;
use dino_tui::tui::update::handle_key;
use dino_tui::tui::{build_app, TuiExit, TuiOptions};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn metrics(i: usize) -> IterMetrics {
    IterMetrics {
        iter: i,
        epoch: i / 20,
        loss: 5.0 - i as f64 * 0.01,
        lr: 1e-4,
        wd: 0.04,
        teacher_temp: 0.04,
        momentum: 0.996,
        iter_time: 0.1,
        data_time: 0.01,
        images_per_s: 640.0,
        teacher_entropy: 3.0,
        kl: 0.2,
        koleo: None,
        time: 1.0e9 + i as f64,
    }
}

#[test]
fn a_trainer_thread_drives_the_ui_and_receives_its_commands() {
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded::<Command>();
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded::<Event>();
    let trainer = std::thread::spawn(move || {
        let info = RunInfo {
            run_dir: "runs/t".into(),
            name: "t".into(),
            arch: "vit_tiny".into(),
            device: "cpu".into(),
            epochs: 5,
            niter_per_ep: 20,
            batch_size: 8,
            out_dim: 256,
            num_images: 160,
            start_iter: 0,
        };
        let mut out = vec![Event::Started(info), Event::State { state: RunState::Running, iter: 0 }];
        out.extend((0..60).map(|i| Event::Metrics(metrics(i))));
        for e in out {
            // Through JSON, as an attached client would see them.
            let line = serde_json::to_string(&e).expect("serialise");
            let back: Event = serde_json::from_str(&line).expect("parse");
            ev_tx.send(back).expect("ui listening");
        }
        cmd_rx.recv().expect("a command")
    });
    let opts =
        TuiOptions { config_dir: Some(std::env::temp_dir().join("dino-tui-test-none")), no_color: Some(false), ..Default::default() };
    let mut app = build_app(&opts, cmd_tx);
    // Wait for all events (the trainer sends 62), then fold them in.
    let mut n = 0;
    while n < 62 {
        let e = ev_rx.recv().expect("event");
        apply_event(&mut app, e);
        n += 1;
    }
    assert_eq!(app.trainer.store.len(), 60);
    let mut term = Terminal::new(TestBackend::new(100, 30)).expect("test backend");
    for tab in Tab::ALL {
        app.shell.tab = tab;
        term.draw(|f| draw(&app, f)).expect("draw");
    }
    handle_key(&mut app, KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE));
    handle_key(&mut app, KeyEvent::new(KeyCode::Char('s'), KeyModifiers::NONE));
    assert_eq!(app.shell.exit, Some(TuiExit::StopTraining));
    assert_eq!(trainer.join().expect("trainer thread"), Command::Stop { checkpoint: true });
}
