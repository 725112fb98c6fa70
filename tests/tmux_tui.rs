//! The real binary in a real terminal: `dino tui` runs inside tmux, driven with send-keys and read
//! with capture-pane, as a person would use it. Skips (saying so) when tmux is not installed.
// Test code (the lints of clippy.toml cover #[test] functions, not their helpers here): a failed
// assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::tmux::Tmux;
use std::path::Path;
use std::time::Duration;

fn metric_lines(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl")).map(|s| s.lines().count()).unwrap_or(0)
}

/// A tiny run long enough to be steered (200 epochs, no numbered checkpoints): its run directory
/// and config file under `d`.
fn long_tiny_run(d: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = d.join("data");
    common::demo_data(&data, 16);
    let run = d.join("run");
    let mut c = common::tiny_config(&data, &run);
    c.optim.epochs = 200;
    c.run.saveckp_freq = 0;
    let cfg = d.join("tiny.toml");
    std::fs::write(&cfg, c.to_toml()).unwrap();
    (run, cfg)
}

#[test]
fn tui_shows_loss_pauses_checkpoints_and_quits() {
    // The directory first, so it is removed after the tmux server (and the dino in it) is gone.
    let d = tempfile::tempdir().unwrap();
    let Some(tmux) = Tmux::start("pause") else { return };
    let (run, cfg) = long_tiny_run(d.path());

    let command =
        format!("{} tui --config {} --theme high-contrast; echo DINO-EXIT=$?; sleep 60", env!("CARGO_BIN_EXE_dino"), cfg.display());
    tmux.cmd(&["new-session", "-d", "-s", "dino", "-x", "120", "-y", "36", &command]);

    // The dashboard appears and shows a real loss value.
    let screen = tmux.wait_for("the loss on the dashboard", Duration::from_secs(60), |s| {
        s.contains("RUNNING") && s.split("loss ").nth(1).is_some_and(|t| t.trim_start().starts_with(|c: char| c.is_ascii_digit()))
    });
    assert!(screen.contains("Dashboard") && screen.contains("collapse"), "{screen}");

    // p pauses within one iteration: the metrics stop growing.
    tmux.keys("p");
    tmux.wait_for("PAUSED", Duration::from_secs(10), |s| s.contains("PAUSED"));
    std::thread::sleep(Duration::from_millis(300));
    let paused_at = metric_lines(&run);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(metric_lines(&run), paused_at, "training went on while paused");

    // c writes a checkpoint at the paused iteration, and the Checkpoints tab lists it under its own name.
    tmux.keys("5");
    tmux.wait_for("the Checkpoints tab", Duration::from_secs(10), |s| s.contains("checkpoints ("));
    let pressed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    tmux.keys("c");
    let name = format!("checkpoint-it{paused_at:08}.json");
    let ckpt = run.join("checkpoints/checkpoint-latest.json");
    let fresh = || dino_tui::run::checkpoint::read_meta(&ckpt).is_ok_and(|m| m.iter == paused_at && m.time >= pressed - 1.0);
    tmux.wait_for("the paused iteration's checkpoint listed", Duration::from_secs(10), |s| s.contains(&name) && fresh());

    // p resumes; q then s stops with a checkpoint and restores the terminal.
    tmux.keys("p");
    tmux.wait_for("RUNNING again", Duration::from_secs(10), |s| s.contains("RUNNING"));
    tmux.keys("q");
    tmux.wait_for("the quit dialog", Duration::from_secs(10), |s| s.contains("stop training and checkpoint"));
    tmux.keys("s");
    let screen = tmux.wait_for("the program to exit", Duration::from_secs(30), |s| s.contains("DINO-EXIT="));
    assert!(screen.contains("DINO-EXIT=0"), "{screen}");
    assert!(screen.contains("training stopped after a checkpoint"), "{screen}");
    assert!(!screen.contains("Dashboard"), "terminal not restored:\n{screen}");
    let meta = dino_tui::run::checkpoint::read_meta(&ckpt).unwrap();
    assert!(meta.iter > paused_at, "the stop checkpoint is older than the pause");
}

/// The number after `key` on the screen (`epoch 3/10` → 3 for "epoch ").
fn number_after(screen: &str, key: &str) -> Option<usize> {
    let at = screen.find(key)?;
    let digits: String = screen[at + key.len()..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

#[test]
fn one_numbering_in_the_header_the_log_tab_and_ctl_status_after_a_pause() {
    // The directory first, so it is removed after the tmux server (and the dino in it) is gone.
    let d = tempfile::tempdir().unwrap();
    let Some(tmux) = Tmux::start("numbering") else { return };
    let (run, cfg) = long_tiny_run(d.path());
    let dino = env!("CARGO_BIN_EXE_dino");
    let command = format!("{dino} tui --config {}; echo DINO-EXIT=$?; sleep 60", cfg.display());
    tmux.cmd(&["new-session", "-d", "-s", "dino", "-x", "120", "-y", "36", &command]);

    // Past the first epoch (10 iterations each), so epoch and iteration differ from 0.
    tmux.wait_for("training past epoch 0", Duration::from_secs(90), |s| number_after(s, " it ").is_some_and(|i| i >= 13));
    tmux.keys("p");
    let screen = tmux.wait_for("the pause's outcome in the footer", Duration::from_secs(20), |s| s.contains("paused at it "));
    // Line 0 the tabs, line 1 the health verdict, line 2 the header.
    let header = screen.lines().nth(2).unwrap_or_default();
    let epoch = number_after(header, "epoch ").unwrap();
    let it = number_after(header, " it ").unwrap();
    assert_eq!(number_after(&screen, "paused at it "), Some(it), "footer and header disagree:\n{screen}");

    // The Log tab names the same moment and epoch.
    tmux.keys("6");
    let log = tmux.wait_for("the Log tab", Duration::from_secs(10), |s| s.contains("log ("));
    let line = format!("paused at it {it} (epoch {epoch})");
    assert!(log.contains(&line), "Log tab lacks `{line}`:\n{log}");

    // So does `dino ctl status`, and the run's files.
    let o = std::process::Command::new(dino).args(["ctl", &run.display().to_string(), "status"]).output().unwrap();
    let status: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)));
    assert_eq!(status["state"], "paused", "{status}");
    assert_eq!(status["iter"].as_u64(), Some(it as u64), "{status}");
    assert_eq!(status["epoch"].as_u64(), Some(epoch as u64), "{status}");
    let events = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    let pause = events.lines().rev().find(|l| l.contains("\"pause\"")).unwrap();
    assert!(pause.contains(&format!("\"iter\":{it}")), "{pause}");
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert_eq!(last["iter"].as_u64(), Some(it as u64 - 1), "the last iteration done is the one before");
    assert_eq!(last["epoch"].as_u64(), Some(epoch as u64));

    tmux.keys("q");
    tmux.wait_for("the quit dialog", Duration::from_secs(10), |s| s.contains("stop training and checkpoint"));
    tmux.keys("s");
    let screen = tmux.wait_for("the program to exit", Duration::from_secs(30), |s| s.contains("DINO-EXIT="));
    assert!(screen.contains("DINO-EXIT=0"), "{screen}");
}
