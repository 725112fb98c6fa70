//! Reviewing a run after training ended, as a person does it in a real terminal: the checkpoint
//! history lists only files that exist (or marks the others), `k` on an old checkpoint evaluates
//! exactly those weights and files the result under that checkpoint, and `o` scores outliers with
//! no trainer — in `dino attach` and in the foreground TUI after FINISHED.
// Test code (the lints of clippy.toml cover #[test] functions, not their helpers here): a failed
// assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::tmux::Tmux;
use dino_tui::run::checkpoint;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A tiny run of `epochs` epochs: a rolling checkpoint every epoch (one kept), numbered every 2.
fn config(d: &Path, name: &str, epochs: usize) -> (PathBuf, PathBuf) {
    let data = d.join("data");
    if !data.exists() {
        common::demo_data(&data, 8);
    }
    let run = d.join(name);
    let mut c = common::tiny_config(&data, &run);
    c.optim.epochs = epochs;
    c.run.saveckp_freq = 2;
    c.run.keep_checkpoints = 1;
    c.run.eval_knn_every = 0;
    let cfg = d.join(format!("{name}.toml"));
    std::fs::write(&cfg, c.to_toml()).unwrap();
    (run, cfg)
}

fn wait_file(what: &str, timeout: Duration, f: impl Fn() -> Option<PathBuf>) -> PathBuf {
    let t0 = Instant::now();
    loop {
        if let Some(p) = f() {
            return p;
        }
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The first file in `RUN/evals` whose name starts with `prefix` and ends with `suffix`.
fn eval_file(run: &Path, prefix: &str, suffix: &str) -> Option<PathBuf> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(run.join("evals"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix) && n.to_string_lossy().ends_with(suffix)))
        .collect();
    names.sort();
    names.into_iter().next()
}

/// The Checkpoints tab's rows: (epoch, the row's text).
fn rows(screen: &str) -> Vec<(usize, String)> {
    screen
        .lines()
        .filter(|l| l.contains(".json"))
        .filter_map(|l| {
            let body = l.trim_start_matches(['│', '▶', ' ']);
            Some((body.split_whitespace().next()?.parse().ok()?, l.to_string()))
        })
        .collect()
}

/// In the Checkpoints tab: every row names a file that exists or says `gone`; selects the row of
/// `epoch`, presses `k`, and checks the result records those weights and shows on that row.
/// Then `o` scores outliers. `down` is how many rows the epoch's row is below the first.
fn review(tmux: &Tmux, run: &Path, epoch: usize) {
    tmux.keys("5");
    let screen = tmux.wait_for("the Checkpoints tab", Duration::from_secs(10), |s| s.contains("checkpoints ("));
    let listed = rows(&screen);
    assert!(listed.len() >= 2, "{screen}");
    for (_, row) in &listed {
        let name = row.split_whitespace().find(|w| w.ends_with(".json")).unwrap();
        let exists = run.join("checkpoints").join(name).exists();
        assert_eq!(!exists, row.contains("gone"), "a row either names a file that exists or says it is gone: {row}");
    }
    let down = listed.iter().position(|(e, _)| *e == epoch).unwrap_or_else(|| panic!("no epoch-{epoch} row:\n{screen}"));
    for _ in 0..down {
        tmux.keys("Down");
    }
    tmux.keys("k");
    let numbered = run.join(format!("checkpoints/checkpoint{epoch:04}.json"));
    let want = checkpoint::read_meta(&numbered).unwrap();
    let result = wait_file("the k-NN result", Duration::from_secs(60), || eval_file(run, &format!("knn-ep{epoch:04}-"), ".json"));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    assert_eq!(json["content_id"].as_str(), want.content_id().as_deref(), "the weights evaluated are epoch {epoch}'s");
    assert_eq!(json["iter"].as_u64(), Some(want.iter as u64));
    let top1 = dino_tui::protocol::headline_top1(&json).unwrap();
    let shown = format!("{top1:.1}");
    tmux.wait_for("the figure on the epoch's row", Duration::from_secs(10), |s| {
        rows(s).iter().any(|(e, row)| *e == epoch && row.contains(&shown))
    });
    tmux.keys("o");
    wait_file("the outlier scores", Duration::from_secs(90), || eval_file(run, "outliers-", ".csv"));
}

#[test]
fn a_finished_run_is_reviewed_in_attach_and_in_the_foreground_tui() {
    // The directory first, so it is removed after the tmux server (and the dino in it) is gone.
    let d = tempfile::tempdir().unwrap();
    let Some(tmux) = Tmux::start("review") else { return };
    let dino = env!("CARGO_BIN_EXE_dino");

    // Trained to the end elsewhere, then attached to.
    let (run, cfg) = config(d.path(), "attached", 4);
    let out = std::process::Command::new(dino).args(["train", "--headless", "--config"]).arg(&cfg).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!run.join("checkpoints/checkpoint-it00000005.json").exists(), "rotated away: its row must say gone");
    let command = format!("{dino} attach {}; sleep 60", run.display());
    tmux.cmd(&["new-session", "-d", "-s", "dino", "-x", "160", "-y", "48", &command]);
    tmux.wait_for("the finished run", Duration::from_secs(30), |s| s.contains("FINISHED"));
    review(&tmux, &run, 2);

    // The foreground TUI, once its own training has finished.
    let (run, cfg) = config(d.path(), "foreground", 2);
    let command = format!("{dino} tui --config {}; sleep 60", cfg.display());
    // The same pane, its command replaced: killing the session and making a new one raced the
    // tmux server's exit once it had no session left (the new session was lost, the screen empty).
    tmux.cmd(&["respawn-pane", "-k", "-t", "dino", &command]);
    tmux.wait_for("FINISHED", Duration::from_secs(120), |s| s.contains("FINISHED"));
    review(&tmux, &run, 2);
}

/// On a real finished run's Outliers tab, `a` lays the teacher's attention over the selected
/// image (computed by the lens worker from the run's checkpoint), `→` steps to a head, `a`
/// again shows the image alone; `n` lists the image's nearest neighbours, `esc` goes back.
#[test]
fn attention_over_the_selected_image_in_attach() {
    let d = tempfile::tempdir().unwrap();
    let Some(tmux) = Tmux::start("lens") else { return };
    let dino = env!("CARGO_BIN_EXE_dino");
    let (run, cfg) = config(d.path(), "lens", 2);
    let out = std::process::Command::new(dino).args(["train", "--headless", "--config"]).arg(&cfg).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let command = format!("{dino} attach {}; sleep 60", run.display());
    tmux.cmd(&["new-session", "-d", "-s", "dino", "-x", "160", "-y", "48", &command]);
    tmux.wait_for("the finished run", Duration::from_secs(30), |s| s.contains("FINISHED"));
    tmux.keys("o");
    wait_file("the outlier scores", Duration::from_secs(90), || eval_file(&run, "outliers-", ".csv"));
    tmux.wait_for("the report's rows", Duration::from_secs(30), |s| s.contains("selected ("));
    tmux.keys("a");
    // The tiny config's ViT has 2 heads: the mean, 2 heads, the PCA colours.
    tmux.wait_for("the mean attention", Duration::from_secs(60), |s| s.contains("attention, mean of heads") && s.contains("view 1/4"));
    tmux.keys("Right");
    tmux.wait_for("the first head", Duration::from_secs(10), |s| s.contains("attention, head 0") && s.contains("view 2/4"));
    tmux.keys("a");
    tmux.wait_for("the image alone", Duration::from_secs(10), |s| s.contains("selected (") && !s.contains("view 2/4"));
    // `n`: the selected image's nearest images of its split, found with the run's teacher.
    tmux.keys("n");
    let screen = tmux.wait_for("the neighbour list", Duration::from_secs(60), |s| s.contains("20 nearest in train"));
    assert!(screen.contains("cosine"), "{screen}");
    tmux.keys("Escape");
    tmux.wait_for("the report again", Duration::from_secs(10), |s| s.contains("images · by"));
}
