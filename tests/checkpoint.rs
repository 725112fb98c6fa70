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

fn keep2() -> files::Retention {
    files::Retention { keep: 2, protected: Default::default() }
}

fn meta(iter: usize) -> CheckpointMeta {
    CheckpointMeta {
        format_version: 1,
        tensors: String::new(),
        tensors_bytes: 0,
        tensors_sha256: None,
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
    checkpoint::save(d.path(), &s, &meta(5), None, &keep2()).unwrap();
    // A crash during the next save: a partial temporary tensor file, no new sidecar.
    std::fs::write(d.path().join("state-it00000010.safetensors.tmp"), b"partial").unwrap();
    let (ckpt, problems) = files::load_latest(d.path());
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(ckpt.unwrap().meta.iter, 5);
}

#[test]
fn a_kill_before_latest_moved_on_resumes_from_the_newer_stable_sidecar() {
    let d = tempfile::tempdir().unwrap();
    let s = state();
    checkpoint::save(d.path(), &s, &meta(5), None, &keep2()).unwrap();
    checkpoint::save(d.path(), &s, &meta(10), None, &keep2()).unwrap();
    // As if killed after `checkpoint-it00000010.json` was written but before latest moved on:
    // latest and previous still name iteration 5.
    std::fs::copy(d.path().join(PREVIOUS), d.path().join(LATEST)).unwrap();
    let (ckpt, problems) = files::load_latest(d.path());
    assert!(problems.is_empty(), "{problems:?}");
    let ckpt = ckpt.unwrap();
    assert_eq!(ckpt.meta.iter, 10);
    assert!(ckpt.path.ends_with("checkpoint-it00000010.json"), "{}", ckpt.path.display());
    // Of equal iterations, latest is the one named.
    checkpoint::save(d.path(), &s, &meta(15), None, &keep2()).unwrap();
    assert!(files::load_latest(d.path()).0.unwrap().path.ends_with(LATEST));
}

#[test]
fn truncated_latest_falls_back_to_previous_and_names_the_file() {
    let d = tempfile::tempdir().unwrap();
    let s = state();
    checkpoint::save(d.path(), &s, &meta(5), None, &keep2()).unwrap();
    checkpoint::save(d.path(), &s, &meta(10), Some(2), &keep2()).unwrap();
    assert!(d.path().join(PREVIOUS).exists());
    let latest = files::read_meta(&d.path().join(LATEST)).unwrap();
    let tensors = d.path().join(&latest.tensors);
    let len = std::fs::metadata(&tensors).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&tensors).unwrap();
    f.set_len(len / 2).unwrap();
    let (ckpt, problems) = files::load_latest(d.path());
    assert_eq!(ckpt.expect("previous checkpoint").meta.iter, 5);
    // The latest tensors, and the numbered copy of the same bytes (tried before the older one).
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains(&latest.tensors) && problems[0].contains("truncated"), "{problems:?}");
    assert!(problems[1].contains("checkpoint0002") && problems[1].contains("truncated"), "{problems:?}");
    // The numbered copy is a separate name for the same bytes: it is damaged too, and says so.
    assert!(files::load_one(&d.path().join("checkpoint0002.json")).is_err());
}

#[test]
fn corrupt_sidecar_is_reported_and_skipped() {
    let d = tempfile::tempdir().unwrap();
    let s = state();
    checkpoint::save(d.path(), &s, &meta(5), None, &keep2()).unwrap();
    checkpoint::save(d.path(), &s, &meta(10), None, &keep2()).unwrap();
    std::fs::write(d.path().join(LATEST), b"{ not json").unwrap();
    let (ckpt, problems) = files::load_latest(d.path());
    // The same checkpoint under its stable name.
    let ckpt = ckpt.unwrap();
    assert_eq!(ckpt.meta.iter, 10);
    assert!(ckpt.path.ends_with("checkpoint-it00000010.json"));
    assert!(problems[0].contains(LATEST) && problems[0].contains("corrupt"), "{problems:?}");
}

#[test]
fn restore_round_trips_every_tensor_and_old_files_are_pruned() {
    let d = tempfile::tempdir().unwrap();
    let s = state();
    for it in [5, 10, 15] {
        checkpoint::save(d.path(), &s, &meta(it), None, &keep2()).unwrap();
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

/// Overwrites the middle of a file with other bytes of the same length.
fn scribble(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n / 2..n / 2 + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn same_size_garbage_is_caught_by_the_checksum_and_previous_is_used() {
    let d = tempfile::tempdir().unwrap();
    let s = state();
    checkpoint::save(d.path(), &s, &meta(5), None, &keep2()).unwrap();
    checkpoint::save(d.path(), &s, &meta(10), None, &keep2()).unwrap();
    let latest = files::read_meta(&d.path().join(LATEST)).unwrap();
    scribble(&d.path().join(&latest.tensors));
    let (ckpt, problems) = files::load_latest(d.path());
    assert_eq!(ckpt.unwrap().meta.iter, 5);
    assert!(problems.iter().any(|p| p.contains("damaged") && p.contains("checksum")), "{problems:?}");
}

#[test]
fn non_finite_weights_are_refused_and_an_older_checkpoint_is_used() {
    let d = tempfile::tempdir().unwrap();
    let s = state();
    checkpoint::save(d.path(), &s, &meta(5), None, &keep2()).unwrap();
    let bad = state();
    tch::no_grad(|| {
        let (_, t) = dino_tui::model::weights::named_tensors(&bad.teacher_vs).into_iter().next().unwrap();
        let _ = t.view([-1]).get(0).fill_(f64::NAN);
    });
    checkpoint::save(d.path(), &bad, &meta(10), None, &keep2()).unwrap();
    let (ckpt, problems) = files::load_latest(d.path());
    assert_eq!(ckpt.unwrap().meta.iter, 5);
    assert!(problems.iter().any(|p| p.contains("non-finite")), "{problems:?}");
}

#[test]
fn when_latest_and_previous_fail_the_newest_other_checkpoint_is_used() {
    let d = tempfile::tempdir().unwrap();
    let s = state();
    let keep3 = files::Retention { keep: 3, protected: Default::default() };
    for it in [5, 10, 15] {
        checkpoint::save(d.path(), &s, &meta(it), None, &keep3).unwrap();
    }
    for name in [LATEST, PREVIOUS] {
        let m = files::read_meta(&d.path().join(name)).unwrap();
        scribble(&d.path().join(&m.tensors));
    }
    let (ckpt, problems) = files::load_latest(d.path());
    let ckpt = ckpt.expect("the third-newest checkpoint");
    assert_eq!(ckpt.meta.iter, 5);
    assert!(ckpt.path.ends_with(files::stable_name(5)));
    assert_eq!(problems.len(), 2, "{problems:?}");
    // Nothing was deleted on the way.
    for it in [5, 10, 15] {
        assert!(d.path().join(format!("state-it{it:08}.safetensors")).exists());
    }
}

#[test]
fn retention_keeps_n_rolling_plus_numbered_plus_protected_each_under_its_own_name() {
    let d = tempfile::tempdir().unwrap();
    let mut s = state();
    let mut ids = vec![];
    for it in [5, 10, 15, 20, 25] {
        // Different weights each time, so each checkpoint has its own content id.
        tch::no_grad(|| {
            let _ = s.loss.center.fill_(it as f64);
        });
        let numbered = (it == 10).then_some(2);
        let protected = ids.first().cloned().into_iter().collect();
        let saved = checkpoint::save(d.path(), &s, &meta(it), numbered, &files::Retention { keep: 2, protected }).unwrap();
        ids.push(saved.content_id.clone().unwrap());
        if it == 10 {
            assert!(saved.path.ends_with("checkpoint0002.json"), "numbered: {:?}", saved.path);
        } else {
            assert!(saved.path.ends_with(files::stable_name(it)), "{:?}", saved.path);
        }
    }
    let (all, problems) = files::list(d.path());
    assert!(problems.is_empty());
    let stable: Vec<usize> = all.iter().filter(|(p, _)| p.to_string_lossy().contains("checkpoint-it")).map(|(_, m)| m.iter).collect();
    // The 2 newest, plus iteration 5 (protected: an evaluation names its content id).
    assert_eq!(stable, vec![25, 20, 5]);
    assert!(d.path().join("checkpoint0002.json").exists(), "numbered checkpoints stay");
    let tensors: std::collections::BTreeSet<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state-it"))
        .collect();
    assert_eq!(tensors.len(), 3, "the tensors of it 5, 20, 25 (it 10's live on as checkpoint0002): {tensors:?}");
    assert_eq!(ids.iter().collect::<std::collections::BTreeSet<_>>().len(), 5, "content ids differ with the weights");
    // The content id is what the sidecar's checksum starts with, whatever the file is called.
    let m = files::read_meta(&d.path().join(files::stable_name(5))).unwrap();
    assert_eq!(m.content_id().as_deref(), Some(ids[0].as_str()));
    assert!(files::toggle_keep(d.path(), &ids[3]).unwrap());
    assert!(files::read_keep(d.path()).contains(&ids[3]));
    assert!(!files::toggle_keep(d.path(), &ids[3]).unwrap());
}

/// A ResNet's convolution weights are channels-last on the CPU and checkpoint files hold C order:
/// a restored state has the saved values in the parameters' layout, optimizer moments included,
/// and its next step gives the same weights as the state that was saved.
#[test]
fn a_channels_last_resnet_restores_its_layout_and_continues_identically() {
    use dino_tui::train::step::StepParams;
    use tch::{Kind, Tensor};
    let mut c = dino_tui::config::preset("cifar-quick").unwrap();
    c.optim.batch_size_per_gpu = 4;
    c.crops.local_crops_number = 1;
    let crops = || -> Vec<Tensor> {
        tch::manual_seed(1);
        [32, 32, 16].iter().map(|&s| Tensor::randn([4, 3, s, s], (Kind::Float, Device::Cpu))).collect()
    };
    let p = StepParams { epoch: 1, lr: 1e-3, wd: 0.04, momentum: 0.99, teacher_temp: 0.02 };
    tch::manual_seed(0);
    let mut saved = DinoState::new(&c, Device::Cpu).unwrap();
    saved.step(&crops(), p).unwrap();
    let mut m = meta(1);
    m.optimizer_steps = saved.optimizer.state.iter().map(|(k, v)| (k.clone(), v.step)).collect();
    let d = tempfile::tempdir().unwrap();
    checkpoint::save(d.path(), &saved, &m, None, &keep2()).unwrap();
    let mut resumed = DinoState::new(&c, Device::Cpu).unwrap();
    checkpoint::restore(&mut resumed, &files::load_latest(d.path()).0.unwrap()).unwrap();
    let name = "backbone.layer2.0.conv1.weight";
    let param = &dino_tui::model::weights::named_tensors(&resumed.student_vs)[name];
    let moment = resumed.optimizer.state[name].buf2.as_ref().unwrap();
    assert_eq!(param.stride(), vec![576, 1, 192, 64], "channels-last");
    assert_eq!(moment.stride(), param.stride(), "the moment in the parameter's layout");
    assert!(moment.equal(saved.optimizer.state[name].buf2.as_ref().unwrap()));
    saved.step(&crops(), p).unwrap();
    resumed.step(&crops(), p).unwrap();
    let (a, b) = (dino_tui::model::weights::named_tensors(&saved.student_vs), dino_tui::model::weights::named_tensors(&resumed.student_vs));
    for (k, v) in &a {
        assert!(v.equal(&b[k]), "{k} differs after the resumed step");
    }
}
