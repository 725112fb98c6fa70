//! Evaluations are filed under the weights they evaluated, whatever happens to the files while
//! they run, and results on different data sets are kept apart.
// Test code (the lints of clippy.toml cover #[test] functions, not their helpers here): a failed
// assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use dino_tui::cmd::offline_eval::{OfflineEvals, Target};
use dino_tui::protocol::{CheckpointInfo, EvalKind, Event};
use dino_tui::run::checkpoint::{self, LATEST};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A finished tiny run of 2 epochs (checkpoints at iterations 5 and 10, both kept).
fn trained_run(d: &Path) -> PathBuf {
    let data = d.join("data");
    common::demo_data(&data, 8);
    let run = d.join("run");
    let mut c = common::tiny_config(&data, &run);
    c.optim.epochs = 2;
    c.run.eval_knn_every = 0;
    c.run.saveckp_freq = 0;
    c.run.keep_checkpoints = 2;
    let cfg = d.join("c.toml");
    std::fs::write(&cfg, c.to_toml()).unwrap();
    common::dino(&["train", "--headless", "--config", cfg.to_str().unwrap()]);
    run
}

fn row(run: &Path, name: &str) -> CheckpointInfo {
    let path = run.join("checkpoints").join(name);
    let m = checkpoint::read_meta(&path).unwrap();
    CheckpointInfo { path, epoch: m.epoch, iter: m.iter, bytes: 0, loss: None, time: 0.0, content_id: m.content_id() }
}

/// Runs one evaluation to its end; `during` is called once the worker has loaded its weights
/// (its first progress past the start).
fn evaluate(run: &Path, kind: EvalKind, target: Target, mut during: impl FnMut()) -> serde_json::Value {
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut evals = OfflineEvals::new(run, tx, true);
    evals.request(kind, target);
    let mut called = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        assert!(std::time::Instant::now() < deadline, "the evaluation did not end");
        let Ok(event) = rx.recv_timeout(Duration::from_millis(50)) else {
            evals.poll(false);
            continue;
        };
        match event {
            Event::EvalProgress { done, total, .. } if done > 0 && done < total && !called => {
                during();
                called = true;
            }
            Event::EvalResult { json, .. } => return json,
            Event::Error { message } => panic!("{message}"),
            _ => {}
        }
        evals.poll(false);
    }
}

#[test]
fn checkpoint_latest_overwritten_while_it_is_evaluated_leaves_the_result_on_the_evaluated_weights() {
    let d = tempfile::tempdir().unwrap();
    let run = trained_run(d.path());
    let (old, new) = (row(&run, "checkpoint-it00000005.json"), row(&run, "checkpoint-it00000010.json"));
    assert_ne!(old.content_id, new.content_id);
    let latest = run.join("checkpoints").join(LATEST);
    assert_eq!(checkpoint::read_meta(&latest).unwrap().content_id(), new.content_id);

    // Evaluating latest (iteration 10); meanwhile latest comes to name iteration 5's weights.
    let json = evaluate(&run, EvalKind::Knn, Target::Checkpoint(Some(latest.clone())), || {
        let tmp = run.join("checkpoints/latest.tmp");
        std::fs::copy(&old.path, &tmp).unwrap();
        std::fs::rename(&tmp, &latest).unwrap();
    });
    assert_eq!(checkpoint::read_meta(&latest).unwrap().content_id(), old.content_id, "the overwrite happened");
    assert_eq!(json["content_id"].as_str(), new.content_id.as_deref(), "recorded: the weights that were loaded");
    assert_eq!(json["iter"].as_u64(), Some(10));

    // The Checkpoints tab files it under iteration 10's row, not iteration 5's.
    let (cmd_tx, _cmd_rx) = crossbeam_channel::unbounded();
    let mut app = dino_tui::tui::build_app(&Default::default(), cmd_tx);
    for r in [&old, &new] {
        dino_tui::tui::trainer_events::apply_event(&mut app, Event::CheckpointSaved(r.clone()));
    }
    dino_tui::tui::trainer_events::apply_event(&mut app, Event::EvalResult { kind: EvalKind::Knn, summary: String::new(), json });
    let on = |c: &CheckpointInfo| app.eval_tab.records.iter().any(|e| e.is_of(c));
    assert!(on(&new) && !on(&old));
}

#[test]
fn one_checkpoint_evaluated_on_two_data_sets_keeps_two_results() {
    let d = tempfile::tempdir().unwrap();
    let run = trained_run(d.path());
    let other = d.path().join("other-data");
    common::demo_data(&other, 12);
    let ckpt = run.join("checkpoints/checkpoint-it00000010.json");
    for data in [d.path().join("data"), other.clone()] {
        common::dino(&["eval", "knn", "--pretrained_weights", ckpt.to_str().unwrap(), "--data_path", data.to_str().unwrap()]);
    }
    let mut results: Vec<String> = std::fs::read_dir(run.join("evals"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("knn-ep0002-it00000010-"))
        .collect();
    results.sort();
    let all: Vec<_> = std::fs::read_dir(run.join("evals")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(results.len(), 2, "{all:?}");
    assert!(results.iter().any(|n| n.contains("-data-")) && results.iter().any(|n| n.contains("-other-data-")), "{results:?}");
    for n in &results {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("evals").join(n)).unwrap()).unwrap();
        assert_eq!(v["iter"].as_u64(), Some(10));
        assert!(v["data"].as_str().is_some(), "{v}");
    }
}

/// `dino compare` on three real runs: two seeds of one learning rate and one of another. The
/// learning rate is the only differing setting, the two seeds are one group (n = 2, mean ± sd),
/// and the JSON document has the documented schema (docs/runs.md, "Comparing runs").
#[test]
fn compare_shows_the_differing_setting_and_groups_seeds() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    common::demo_data(&data, 8);
    for (name, seed, lr) in [("a-seed0", 0, 0.001), ("a-seed1", 1, 0.001), ("b", 0, 0.01)] {
        let mut c = common::tiny_config(&data, &d.path().join("runs").join(name));
        c.optim.epochs = 2;
        c.run.eval_knn_every = 1;
        c.run.seed = seed;
        c.optim.lr = lr;
        let cfg = d.path().join(format!("{name}.toml"));
        std::fs::write(&cfg, c.to_toml()).unwrap();
        common::dino(&["train", "--headless", "--config", cfg.to_str().unwrap()]);
    }
    let runs = d.path().join("runs");
    let json: serde_json::Value = serde_json::from_str(&common::dino(&["compare", runs.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["differing"], serde_json::json!(["lr"]), "{json:#}");
    assert_eq!(json["common_iter"], 9, "2 epochs of 5 iterations: 0..=9");
    let groups = json["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{json:#}");
    let seeds = groups.iter().find(|g| g["runs"].as_array().unwrap().len() == 2).expect("the two seeds are one group");
    assert_eq!(seeds["settings"]["lr"], "0.001");
    let mut seen: Vec<u64> = seeds["runs"].as_array().unwrap().iter().map(|r| r["seed"].as_u64().unwrap()).collect();
    seen.sort();
    assert_eq!(seen, [0, 1]);
    for key in ["best_knn", "last_knn", "loss_at_common", "images_per_s", "train_seconds"] {
        let s = &seeds[key];
        assert_eq!(s["n"], 2, "{key}: {s}");
        assert!(s["mean"].as_f64().is_some_and(f64::is_finite) && s["sd"].as_f64().is_some_and(|x| x >= 0.0), "{key}: {s}");
    }
    let run = &seeds["runs"][0];
    for key in ["name", "path", "status", "best_knn", "last_knn", "iterations", "loss_at_common", "images_per_s", "train_seconds"] {
        assert!(!run[key].is_null(), "{key} missing: {run}");
    }
    assert_eq!(run["status"], "finished");
    assert_eq!(run["iterations"], 10);

    let table = common::dino(&[
        "compare",
        runs.join("a-seed0").to_str().unwrap(),
        runs.join("a-seed1").to_str().unwrap(),
        runs.join("b").to_str().unwrap(),
    ]);
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("RUN") && header.contains("LR") && header.contains("LOSS@9") && header.contains("BEST KNN"), "{table}");
    // --plot: both panels, a line per run labelled with its learning rate, against time.
    let svg = d.path().join("compare.svg");
    common::dino(&["compare", runs.to_str().unwrap(), "--plot", svg.to_str().unwrap(), "--by", "time"]);
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(drawn.contains("minutes of training") && drawn.contains("a-seed1 (lr=0.001)") && drawn.contains("b (lr=0.01)"), "{drawn}");
    // One colour per run, each drawn four times: its loss and k-NN lines and their legend samples.
    for colour in ["#1F77B4", "#FF7F0E", "#2CA02C"] {
        let lines = drawn.matches(&format!("<polyline fill=\"none\" opacity=\"1\" stroke=\"{colour}\"")).count();
        assert_eq!(lines, 4, "{colour}\n{drawn}");
    }
    let grouped = table.lines().find(|l| l.starts_with("a-seed0, a-seed1")).unwrap_or_else(|| panic!("{table}"));
    assert!(grouped.contains(" ± ") && grouped.contains("finished"), "{table}");
    // A typo among the runs is named, not silently left out.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_dino"))
        .arg("compare")
        .arg(runs.join("b"))
        .arg(d.path().join("nothere"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("nothere") && err.contains("not a run directory"), "{err}");
}
