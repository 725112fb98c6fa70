//! Checkpoints survive a crash at any moment: a half-written file never replaces a good one,
//! and a damaged latest checkpoint is reported by name while the previous one is used.
// Test code (the lints of clippy.toml cover #[test] functions, not their helpers here): a failed
// assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use dino_tui::run::checkpoint::{self as files, CheckpointMeta, LATEST, PREVIOUS};
use dino_tui::train::checkpoint;
use dino_tui::train::step::DinoState;
use std::path::Path;
use tch::Device;

fn state() -> DinoState {
    let c = common::tiny_config(Path::new("unused"), Path::new("unused"));
    DinoState::new(&c, Device::Cpu).unwrap()
}

fn meta(iter: usize) -> CheckpointMeta {
    CheckpointMeta {
        format_version: 1,
        tensors: String::new(),
        tensors_bytes: 0,
        epoch: iter / 5,
        iter,
        niter_per_ep: 5,
        loader_batch: iter % 5,
        seed: 0,
        optimizer_steps: Default::default(),
        schedules: vec![],
        loss_scale: None,
        last_loss: Some(1.0),
        time: 0.0,
        config: String::new(),
    }
}

#[test]
fn crash_while_writing_leaves_the_previous_checkpoint_usable() {
    let d = tempfile::tempdir().unwrap();
    let s = state();
    checkpoint::save(d.path(), &s, &meta(5), None).unwrap();
    // A crash during the next save: a partial temporary tensor file, no new sidecar.
    std::fs::write(d.path().join("state-it00000010.safetensors.tmp"), b"partial").unwrap();
    let (ckpt, problems) = files::load_latest(d.path());
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(ckpt.unwrap().meta.iter, 5);
}

#[test]
fn truncated_latest_falls_back_to_previous_and_names_the_file() {
    let d = tempfile::tempdir().unwrap();
    let s = state();
    checkpoint::save(d.path(), &s, &meta(5), None).unwrap();
    checkpoint::save(d.path(), &s, &meta(10), Some(2)).unwrap();
    assert!(d.path().join(PREVIOUS).exists());
    let latest = files::read_meta(&d.path().join(LATEST)).unwrap();
    let tensors = d.path().join(&latest.tensors);
    let len = std::fs::metadata(&tensors).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&tensors).unwrap();
    f.set_len(len / 2).unwrap();
    let (ckpt, problems) = files::load_latest(d.path());
    assert_eq!(ckpt.expect("previous checkpoint").meta.iter, 5);
    assert_eq!(problems.len(), 1);
    assert!(problems[0].contains(&latest.tensors) && problems[0].contains("truncated"), "{problems:?}");
    // The numbered copy is a separate name for the same bytes: it is damaged too, and says so.
    assert!(files::load_one(&d.path().join("checkpoint0002.json")).is_err());
}

#[test]
fn corrupt_sidecar_is_reported_and_skipped() {
    let d = tempfile::tempdir().unwrap();
    let s = state();
    checkpoint::save(d.path(), &s, &meta(5), None).unwrap();
    checkpoint::save(d.path(), &s, &meta(10), None).unwrap();
    std::fs::write(d.path().join(LATEST), b"{ not json").unwrap();
    let (ckpt, problems) = files::load_latest(d.path());
    assert_eq!(ckpt.unwrap().meta.iter, 5);
    assert!(problems[0].contains(LATEST) && problems[0].contains("corrupt"), "{problems:?}");
}

#[test]
fn restore_round_trips_every_tensor_and_old_files_are_pruned() {
    let d = tempfile::tempdir().unwrap();
    let s = state();
    for it in [5, 10, 15] {
        checkpoint::save(d.path(), &s, &meta(it), None).unwrap();
    }
    // Only the tensors latest and previous name remain.
    let mut files: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    files.sort();
    assert_eq!(files, vec!["state-it00000010.safetensors", "state-it00000015.safetensors"]);
    let (ckpt, _) = files::load_latest(d.path());
    let ckpt = ckpt.unwrap();
    let mut other = state();
    checkpoint::restore(&mut other, &ckpt).unwrap();
    let a = dino_tui::model::weights::named_tensors(&s.student_vs);
    let b = dino_tui::model::weights::named_tensors(&other.student_vs);
    for (k, v) in &a {
        assert!(v.equal(&b[k]), "{k}");
    }
}
