//! Evaluation end to end on generated images: results recorded in the run directory (live from
//! the trainer and from the command path), the feature cache and its invalidation, class counts
//! from folders, the linear probe, and the shared cifar-vehicles set when it is present.
// Test code (the lints of clippy.toml cover #[test] functions, not their helpers here): a failed
// assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use dino_tui::eval::features::{extract_split, EvalTransform, ExtractOptions, FeatureCache, FeatureKind};
use dino_tui::eval::source::{self, CheckpointKey, SourceSpec};
use dino_tui::protocol::{Command, EvalKind, Event, RunState};
use dino_tui::train::trainer::{spawn, OnNonFinite, TrainerHandle};
use std::path::Path;
use std::time::Duration;

/// libtorch's global random generator: one trainer at a time (as tests/training.rs).
static ONE_TRAINER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_TRAINER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn drive(h: TrainerHandle, mut on_event: impl FnMut(&Event, &crossbeam_channel::Sender<Command>)) -> Vec<Event> {
    let mut events = vec![];
    loop {
        let e = h.events.recv_timeout(Duration::from_secs(120)).expect("trainer went quiet");
        on_event(&e, &h.commands);
        let over = matches!(&e, Event::State { state, .. } if state.is_over());
        events.push(e);
        if over {
            break;
        }
    }
    let state = h.thread.join().expect("trainer thread").expect("trainer result");
    assert_eq!(state, RunState::Finished);
    events
}

fn spec(weights: &Path) -> SourceSpec {
    SourceSpec::teacher(weights.display().to_string(), tch::Device::Cpu, 0)
}

fn opts(crop: i64) -> ExtractOptions {
    ExtractOptions {
        transform: EvalTransform::for_crop(crop as usize),
        batch_size: 16,
        num_workers: 1,
        device: tch::Device::Cpu,
        kind: FeatureKind::Cls,
        tta: false,
    }
}

/// A tiny run in `d/run` on generated data in `d/data` that evaluates k-NN after every epoch.
fn knn_every_epoch(d: &Path) -> (std::path::PathBuf, dino_tui::config::TrainConfig) {
    let data = d.join("data");
    common::demo_data(&data, 8);
    let out = d.join("run");
    let mut c = common::tiny_config(&data, &out);
    c.run.eval_knn_every = 1;
    (out, c)
}

#[test]
fn live_knn_results_appear_in_the_run_directory() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let (out, mut c) = knn_every_epoch(d.path());
    c.optim.epochs = 1;
    let mut asked = false;
    let events = drive(spawn(c, OnNonFinite::Stop, dino_tui::cmd::evaluator::evaluator()).unwrap(), |e, cmd| {
        // Also ask from the "TUI" once, mid-epoch.
        if let (Event::Metrics(m), false) = (e, asked) {
            if m.iter == 1 {
                asked = true;
                cmd.send(Command::Eval { kind: EvalKind::Knn, checkpoint: None }).unwrap();
            }
        }
    });
    let all: Vec<_> = events
        .iter()
        .filter_map(|e| if let Event::EvalResult { kind, summary, json } = e { Some((*kind, summary, json)) } else { None })
        .collect();
    // First the random-weights baseline the run measures at its start (the health verdict's).
    assert_eq!(all.first().map(|r| r.2["random_weights"].as_bool()), Some(Some(true)), "{all:?}");
    let results: Vec<_> = all.into_iter().filter(|r| r.2["random_weights"] != true).collect();
    assert_eq!(results.len(), 2, "one requested, one at the epoch end");
    for (kind, summary, json) in &results {
        assert_eq!(*kind, EvalKind::Knn);
        assert!(summary.contains("training paused"), "{summary}");
        assert_eq!(json["num_classes"], 5);
        assert_eq!(json["num_train"], 40);
        assert_eq!(json["num_val"], 10);
        let r = json["results"].as_array().unwrap();
        assert_eq!(r.len(), 4);
        // k = 100 and 200 exceed the 40 training images: clamped, still reported under their k.
        assert_eq!(r[3]["k"], 200);
        assert!(r[1]["top1"].as_f64().unwrap() >= 0.0 && r[1]["top5"].as_f64().is_some());
    }
    assert!(events.iter().any(|e| matches!(e, Event::EvalProgress { kind: EvalKind::Knn, done, total } if done == total && *total == 50)));
    let files: Vec<_> =
        std::fs::read_dir(out.join("evals")).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    // The two results, and the baseline's file that a resume reuses.
    assert_eq!(files.iter().filter(|f| f.starts_with("knn-") && f.ends_with(".json")).count(), 3, "{files:?}");
    assert!(files.iter().any(|f| f.starts_with("knn-random-")), "{files:?}");
    let log = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    let evals: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|v| v["type"] == "eval").collect();
    assert_eq!(evals.len(), 3);
    assert!(evals.iter().all(|v| v["kind"] == "knn"));
}

/// An epoch's k-NN names the checkpoint saved of the same weights, so retention keeps that file
/// and the Checkpoints tab shows the result on a row whose file is there (it read "gone").
#[test]
fn retention_keeps_the_checkpoints_an_epoch_knn_evaluated() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let (out, mut c) = knn_every_epoch(d.path());
    c.optim.epochs = 3;
    c.run.saveckp_freq = 0;
    c.run.keep_checkpoints = 1;
    drive(spawn(c, OnNonFinite::Stop, dino_tui::cmd::evaluator::evaluator()).unwrap(), |_, _| {});
    let (sidecars, problems) = dino_tui::run::checkpoint::list(&out.join("checkpoints"));
    assert!(problems.is_empty(), "{problems:?}");
    let on_disk: Vec<String> = sidecars.iter().filter_map(|(_, m)| m.content_id()).collect();
    let log = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    let epoch_knn: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "eval" && v["random_weights"] != true)
        .collect();
    assert_eq!(epoch_knn.len(), 3, "{epoch_knn:?}");
    for v in &epoch_knn {
        let id = v["content_id"].as_str().unwrap_or_else(|| panic!("no content id: {v}"));
        assert!(on_disk.iter().any(|d| d == id), "checkpoint {id} of epoch {} was removed; on disk {on_disk:?}", v["epoch"]);
    }
}

#[test]
fn linear_and_checkpoint_evaluations_run_from_a_live_run_one_after_the_other() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    common::demo_data(&data, 8);
    let out = d.path().join("run");
    let mut c = common::tiny_config(&data, &out);
    c.optim.epochs = 2;
    let mut saved = None;
    let events = drive(spawn(c, OnNonFinite::Stop, dino_tui::cmd::evaluator::evaluator()).unwrap(), |e, cmd| {
        if let (Event::CheckpointSaved(info), None) = (e, &saved) {
            saved = Some(info.clone());
            // Both at once, as a person pressing `l` then Enter on the Checkpoints tab would.
            cmd.send(Command::Eval { kind: EvalKind::Linear, checkpoint: None }).unwrap();
            cmd.send(Command::Eval { kind: EvalKind::Knn, checkpoint: Some(info.path.clone()) }).unwrap();
        }
    });
    let saved = saved.unwrap();
    assert!(
        events.iter().any(|e| matches!(e, Event::Warning { message } if message.contains("queued"))),
        "the second request waits for the first"
    );
    let results: Vec<_> =
        events.iter().filter_map(|e| if let Event::EvalResult { kind, json, .. } = e { Some((*kind, json)) } else { None }).collect();
    assert_eq!(results.len(), 2, "{results:?}");
    let (kind, linear) = &results[0];
    assert_eq!(*kind, EvalKind::Linear);
    let acc = linear["test_acc1"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&acc), "{linear}");
    assert_eq!(linear["num_classes"], 5);
    assert_eq!(linear["weights"], "teacher (live)");
    let (kind, knn) = &results[1];
    assert_eq!(*kind, EvalKind::Knn);
    assert_eq!(knn["iter"], saved.iter, "the checkpoint's weights, not the live ones");
    assert_eq!(knn["epoch"], saved.epoch);
    assert!(knn["weights"].as_str().unwrap().contains(&saved.path.display().to_string()));
    let files: Vec<_> =
        std::fs::read_dir(out.join("evals")).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(files.iter().any(|f| f.starts_with("linear-")), "{files:?}");
    assert!(files.iter().any(|f| f.starts_with("knn-")), "{files:?}");
}

#[test]
fn cached_features_are_reused_and_invalidated_when_the_checkpoint_changes() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    common::demo_data(&data, 4);
    let out = d.path().join("run");
    let mut c = common::tiny_config(&data, &out);
    c.optim.epochs = 1;
    drive(spawn(c.clone(), OnNonFinite::Stop, dino_tui::cmd::evaluator::evaluator()).unwrap(), |_, _| {});

    let layout = dino_tui::data::DataLayout::discover(&data).unwrap();
    let val = layout.val().unwrap();
    let src = source::load(&spec(&out)).unwrap();
    assert_eq!(src.run_dir.as_deref(), Some(out.as_path()));
    assert_eq!(src.config.model.embed_dim, Some(24), "architecture from the checkpoint's config");
    let cache = FeatureCache::for_run_or_user(src.run_dir.as_deref()).unwrap();
    assert!(cache.dir.starts_with(out.join("evals")));
    let o = opts(src.config.crops.global_crop_size as i64);
    let first = extract_split(&src.backbone, val, &o, Some((&cache, &src.identity)), &mut |_, _| {}).unwrap();
    assert!(!first.from_cache);
    assert_eq!(first.num_classes(), 5, "classes from the folders");
    let second = extract_split(&src.backbone, val, &o, Some((&cache, &src.identity)), &mut |_, _| {}).unwrap();
    assert!(second.from_cache);
    assert!(first.features.equal(&second.features));

    // One more epoch rewrites the latest checkpoint: the cache must not answer for it.
    c.optim.epochs = 2;
    drive(spawn(c, OnNonFinite::Stop, dino_tui::cmd::evaluator::evaluator()).unwrap(), |_, _| {});
    let src2 = source::load(&spec(&out)).unwrap();
    assert_ne!(src.identity, src2.identity);
    let third = extract_split(&src2.backbone, val, &o, Some((&cache, &src2.identity)), &mut |_, _| {}).unwrap();
    assert!(!third.from_cache);
    assert!(!third.features.equal(&first.features), "new weights, new features");
    let fresh = extract_split(&src2.backbone, val, &o, None, &mut |_, _| {}).unwrap();
    assert!(third.features.allclose(&fresh.features, 1e-5, 1e-6, false));

    // The student key and the numbered checkpoint file load too, with identities of their own.
    let mut s = spec(&out.join("checkpoints").join("checkpoint0001.json"));
    s.checkpoint_key = CheckpointKey::Student;
    let student = source::load(&s).unwrap();
    assert_eq!(student.epoch, Some(1));
    assert_ne!(student.identity, src2.identity);
    // Their results get files of their own: a student's k-NN must not replace the teacher's.
    let teacher = source::load(&spec(&out.join("checkpoints").join("checkpoint0001.json"))).unwrap();
    let root = layout.root();
    assert_eq!(student.result_label(root), format!("{}-student", teacher.result_label(root)));
}

/// The quick linear probe reports its epochs as the second half of the bar: on a few thousand
/// images they take as long as the extraction, and a bar at its end for a minute read as a hang.
#[test]
fn the_linear_probe_reports_its_epochs_as_progress() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    common::demo_data(&data, 4);
    let cfg = common::tiny_config(&data, &d.path().join("unused"));
    let random = source::random_like(&cfg, &SourceSpec::teacher("random", tch::Device::Cpu, 1)).unwrap();
    let mut calls: Vec<(usize, usize)> = vec![];
    dino_tui::eval::live::linear_of_backbone(&random.backbone, &cfg, tch::Device::Cpu, 1, &mut |d, t| calls.push((d, t))).unwrap();
    let total = calls[0].1;
    assert!(calls.iter().all(|c| c.1 == total), "one total for the whole evaluation: {calls:?}");
    let images = calls.iter().filter(|(d, _)| 2 * d <= total).count();
    let epochs = calls.iter().filter(|(d, _)| 2 * d > total).count();
    assert!(images >= 2 && epochs >= 50, "{images} extraction steps, {epochs} probe steps: {calls:?}");
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0), "never backwards: {calls:?}");
    assert_eq!(calls.last().map(|c| c.0), Some(total), "ends full");
}

#[test]
fn random_baseline_and_bare_backbone_files_load() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    common::demo_data(&data, 4);
    let cfg = common::tiny_config(&data, &d.path().join("unused"));
    let cfg_path = d.path().join("tiny.toml");
    std::fs::write(&cfg_path, cfg.to_toml()).unwrap();
    let mut s = spec(Path::new("random"));
    s.pretrained_weights = "random".into();
    s.config = Some(cfg_path);
    let r = source::load(&s).unwrap();
    assert!(r.description.contains("random"));
    assert_eq!(r.backbone.embed_dim(), 24);
    // Export the random backbone under the reference's names and load it back without a config.
    let file = d.path().join("backbone.safetensors");
    dino_tui::model::weights::save(&r.vs, "", &file).unwrap();
    let mut b = spec(&file);
    b.arch = Some("vit_tiny".into());
    let loaded = source::load(&b).unwrap();
    assert_eq!(loaded.config.model.embed_dim, Some(24), "width read from the tensors");
    assert_eq!(loaded.config.model.depth, Some(1));
    assert_eq!(loaded.config.crops.global_crop_size, 16);
    // The number of heads is not in the tensors: with the config that made them, the same features.
    b.config = s.config.clone();
    let loaded = source::load(&b).unwrap();
    let layout = dino_tui::data::DataLayout::discover(&data).unwrap();
    let o = opts(16);
    let a = extract_split(&r.backbone, layout.val().unwrap(), &o, None, &mut |_, _| {}).unwrap();
    let b = extract_split(&loaded.backbone, layout.val().unwrap(), &o, None, &mut |_, _| {}).unwrap();
    assert!(a.features.allclose(&b.features, 1e-5, 1e-6, false));
    assert!(source::load(&spec(&d.path().join("missing.json"))).is_err());
}

/// Real data: the random-weight baseline on cifar-vehicles gives 4 classes and no top-5.
#[test]
fn cifar_vehicles_random_knn_when_present() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/cifar-vehicles");
    if !common::prerequisite(root.join("val").is_dir(), &format!("the shared data {} is not there", root.display())) {
        return;
    }
    let mut s = spec(Path::new("random"));
    s.pretrained_weights = "random".into();
    let mut c = dino_tui::config::preset("cifar-quick").unwrap();
    // Depth 1 keeps this test fast; only the plumbing on real images is under test.
    c.model.depth = Some(1);
    let p = tempfile::tempdir().unwrap();
    let cfg = p.path().join("c.toml");
    std::fs::write(&cfg, c.to_toml()).unwrap();
    s.config = Some(cfg);
    let r = source::load(&s).unwrap();
    let layout = dino_tui::data::DataLayout::discover(&root).unwrap();
    let val = layout.val().unwrap();
    let sub = dino_tui::data::Split {
        files: val.files.iter().step_by(25).cloned().collect(),
        labels: val.labels.iter().step_by(25).copied().collect(),
        ..val.clone()
    };
    let o = ExtractOptions { batch_size: 64, ..opts(32) };
    let f = extract_split(&r.backbone, &sub, &o, None, &mut |_, _| {}).unwrap();
    assert_eq!(f.num_classes(), 4);
    let rep = dino_tui::eval::knn::knn_report(&f, &f, &[20], 0.07);
    assert_eq!(rep.num_val, 40);
    assert!(rep.results[0].top5.is_none());
}

/// One unreadable image in `val/` is skipped and named in the periodic k-NN's `eval` entry of
/// `events.jsonl` (it used to fail every epoch with no entry at all).
#[test]
fn an_unreadable_val_image_is_skipped_and_named_by_the_periodic_knn() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    common::demo_data(&data, 8);
    let class = std::fs::read_dir(data.join("val")).unwrap().flatten().map(|e| e.path()).find(|p| p.is_dir()).unwrap();
    std::fs::write(class.join("broken.png"), b"not a png at all").unwrap();
    let out = d.path().join("run");
    let mut c = common::tiny_config(&data, &out);
    c.optim.epochs = 1;
    c.run.eval_knn_every = 1;
    drive(spawn(c, OnNonFinite::Stop, dino_tui::cmd::evaluator::evaluator()).unwrap(), |_, _| {});
    let log = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    // The run's own k-NN; the random-weights baseline before it meets the same image.
    let evals: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "eval" && v["random_weights"] != true)
        .collect();
    assert_eq!(evals.len(), 1, "{log}");
    assert_eq!(evals[0]["num_val"], 10, "the 10 readable val images");
    let unreadable = evals[0]["unreadable"].as_array().unwrap();
    assert_eq!(unreadable.len(), 1);
    assert!(unreadable[0].as_str().unwrap().contains("broken.png"), "{unreadable:?}");
}
