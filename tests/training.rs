//! End-to-end training on real (generated) images: a complete run directory, resume after a
//! stop mid-epoch reproducing the uninterrupted run, the non-finite-loss guard, schedule edits.
// Test code (the lints of clippy.toml cover #[test] functions, not their helpers here): a failed
// assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use dino_tui::protocol::schedule::{EditKind, ScheduleEdit, ScheduleName};
use dino_tui::protocol::{AlarmKind, Command, Event, RunState};
use dino_tui::run::checkpoint;
use dino_tui::train::trainer::{spawn, OnNonFinite, TrainerHandle};
use std::time::Duration;

/// libtorch has one global random generator (weights are initialised from it after
/// `manual_seed`), so trainers of parallel tests would draw from each other's stream: run one at a time.
static ONE_TRAINER_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_TRAINER_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Collects events until the run ends; `on_event` may send commands.
fn drive(h: TrainerHandle, mut on_event: impl FnMut(&Event, &crossbeam_channel::Sender<Command>)) -> (Vec<Event>, RunState) {
    let mut events = vec![];
    loop {
        match h.events.recv_timeout(Duration::from_secs(120)) {
            Ok(e) => {
                on_event(&e, &h.commands);
                let over = matches!(&e, Event::State { state, .. } if state.is_over());
                events.push(e);
                if over {
                    break;
                }
            }
            Err(e) => panic!("trainer went quiet: {e}"),
        }
    }
    let state = h.thread.join().expect("trainer thread").expect("trainer result");
    (events, state)
}

fn losses(events: &[Event]) -> Vec<(usize, f64)> {
    events.iter().filter_map(|e| if let Event::Metrics(m) = e { Some((m.iter, m.loss)) } else { None }).collect()
}

#[test]
fn short_run_leaves_a_complete_run_directory() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    common::demo_data(&d.path().join("data"), 8);
    let out = d.path().join("run");
    let c = common::tiny_config(&d.path().join("data"), &out);
    let (events, state) = drive(spawn(c, OnNonFinite::Stop, dino_tui::cmd::evaluator::evaluator()).unwrap(), |_, _| {});
    assert_eq!(state, RunState::Finished);
    let l = losses(&events);
    assert_eq!(l.len(), 15, "3 epochs x 5 iterations");
    assert!(l.iter().all(|(_, v)| v.is_finite()));
    for f in
        ["config.toml", "metrics.jsonl", "log.txt", "events.jsonl", "checkpoints/checkpoint-latest.json", "checkpoints/checkpoint0003.json"]
    {
        assert!(out.join(f).exists(), "{f} missing");
    }
    // log.txt: one reference-style line per epoch.
    let log = std::fs::read_to_string(out.join("log.txt")).unwrap();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    for (i, v) in lines.iter().enumerate() {
        assert_eq!(v["epoch"].as_u64(), Some(i as u64));
        for k in ["train_loss", "train_lr", "train_wd"] {
            assert!(v[k].as_f64().is_some(), "{k} missing in {v}");
        }
    }
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 15);
    let config = dino_tui::config::TrainConfig::from_toml_file(&out.join("config.toml")).unwrap();
    assert_eq!(config.model.embed_dim, Some(24));
}

#[test]
fn resume_mid_epoch_reproduces_the_uninterrupted_run() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    common::demo_data(&data, 16); // 80 images: 10 iterations per epoch
    let config = |out: &str| {
        let mut c = common::tiny_config(&data, &d.path().join(out));
        c.optim.epochs = 2;
        c
    };

    let (full, _) = drive(spawn(config("full"), OnNonFinite::Stop, dino_tui::cmd::evaluator::evaluator()).unwrap(), |_, _| {});

    // The same run, asked to checkpoint and stop early in epoch 2 (the trainer takes the command
    // between iterations, a few iterations later at most), then started again.
    let part_dir = d.path().join("part");
    let (first, state) = drive(spawn(config("part"), OnNonFinite::Stop, dino_tui::cmd::evaluator::evaluator()).unwrap(), |e, cmd| {
        if let Event::Metrics(m) = e {
            if m.iter == 11 {
                cmd.send(Command::Stop { checkpoint: true }).unwrap();
            }
        }
    });
    assert_eq!(state, RunState::Stopped);
    let stopped_after = losses(&first).last().unwrap().0;
    let meta = checkpoint::read_meta(&part_dir.join("checkpoints/checkpoint-latest.json")).unwrap();
    assert_eq!(meta.iter, stopped_after + 1);
    assert_eq!((meta.epoch, meta.loader_batch), (1, meta.iter - 10));
    assert!(meta.loader_batch > 0, "the stop must land mid-epoch for this test to mean anything");

    let (second, state) = drive(spawn(config("part"), OnNonFinite::Stop, dino_tui::cmd::evaluator::evaluator()).unwrap(), |_, _| {});
    assert_eq!(state, RunState::Finished);
    let started = second.iter().find_map(|e| if let Event::Started(i) = e { Some(i.start_iter) } else { None });
    assert_eq!(started, Some(meta.iter));
    let resumed: Vec<(usize, f64)> = losses(&first).into_iter().chain(losses(&second)).collect();
    let full = losses(&full);
    assert_eq!(resumed.len(), full.len());
    for ((i, a), (j, b)) in resumed.iter().zip(&full) {
        assert_eq!(i, j);
        assert!((a - b).abs() < 1e-5 * b.abs().max(1.0), "iteration {i}: resumed {a} vs uninterrupted {b}");
    }
    // metrics.jsonl continues without gaps or duplicates.
    let iters: Vec<u64> = std::fs::read_to_string(part_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["iter"].as_u64().unwrap())
        .collect();
    assert_eq!(iters, (0..20).collect::<Vec<u64>>());
}

#[test]
fn non_finite_loss_stops_headless_and_keeps_the_last_good_checkpoint() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    common::demo_data(&data, 8);
    let out = d.path().join("run");
    let mut sent = false;
    let (events, state) =
        drive(spawn(common::tiny_config(&data, &out), OnNonFinite::Stop, dino_tui::cmd::evaluator::evaluator()).unwrap(), |e, cmd| {
            // After the first epoch's checkpoint, push the learning rate far past stability.
            if let Event::CheckpointSaved(c) = e {
                if !sent && c.iter == 5 {
                    sent = true;
                    let edit = ScheduleEdit { schedule: ScheduleName::Lr, from_iter: 0, kind: EditKind::Constant(1e30) };
                    cmd.send(Command::EditSchedule(edit)).unwrap();
                }
            }
        });
    assert_eq!(state, RunState::Failed);
    assert!(events.iter().any(|e| matches!(e, Event::Alarm { kind: AlarmKind::NonFiniteLoss, .. })));
    assert!(events.iter().any(|e| matches!(e, Event::ScheduleEdited { .. })));
    let (ckpt, problems) = checkpoint::load_latest(&out.join("checkpoints"));
    assert!(problems.is_empty(), "{problems:?}");
    let ckpt = ckpt.expect("last good checkpoint");
    assert_eq!(ckpt.meta.iter, 5);
    assert!(ckpt.tensors.values().all(|t| bool::try_from(t.isfinite().all()).unwrap()));
    let log = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    assert!(log.contains("\"non_finite_loss\"") && log.contains("schedule_edit"), "{log}");
}

#[test]
fn exclude_removes_exactly_the_listed_images_from_training() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    common::demo_data(&data, 8);
    let layout = dino_tui::data::DataLayout::discover(&data).unwrap();
    let pretext = layout.pretext().files.clone();
    assert_eq!(pretext.len(), 40);
    // Eight listed the way the Outliers tab writes them (relative), one absolute, one that matches nothing.
    let rel = |p: &std::path::Path| p.strip_prefix(&data).unwrap().display().to_string();
    let mut list = String::from("# test\n");
    for p in &pretext[..7] {
        list.push_str(&format!("{}\n", rel(p)));
    }
    list.push_str(&format!("{}\npretext/not-there.png\n", pretext[7].display()));
    let file = d.path().join("exclude.txt");
    std::fs::write(&file, list).unwrap();
    let out = d.path().join("run");
    let mut c = common::tiny_config(&data, &out);
    c.optim.epochs = 1;
    c.run.exclude = Some(file.clone());
    let (events, state) = drive(spawn(c.clone(), OnNonFinite::Stop, dino_tui::cmd::evaluator::evaluator()).unwrap(), |_, _| {});
    assert_eq!(state, RunState::Finished);
    let info = events.iter().find_map(|e| if let Event::Started(i) = e { Some(i.clone()) } else { None }).unwrap();
    assert_eq!(info.num_images, 32);
    assert_eq!(info.niter_per_ep, 4, "32 images in batches of 8");
    let log = std::fs::read_to_string(out.join("events.jsonl")).unwrap();
    assert!(log.contains(r#""type":"exclude""#) && log.contains(r#""removed":8"#) && log.contains(r#""unmatched":1"#), "{log}");
    // A list that cannot be read is named in the error.
    c.run.exclude = Some(d.path().join("missing.txt"));
    c.run.output_dir = Some(d.path().join("run2"));
    let err = spawn(c, OnNonFinite::Stop, dino_tui::cmd::evaluator::evaluator()).err().unwrap();
    assert!(format!("{err:#}").contains("missing.txt"), "{err:#}");
}

#[test]
fn a_run_whose_checkpoints_are_all_damaged_refuses_to_restart_and_deletes_nothing() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    common::demo_data(&d.path().join("data"), 8);
    let out = d.path().join("run");
    let c = common::tiny_config(&d.path().join("data"), &out);
    let (_, state) = drive(spawn(c.clone(), OnNonFinite::Stop, dino_tui::cmd::evaluator::evaluator()).unwrap(), |_, _| {});
    assert_eq!(state, RunState::Finished);
    let ckpts = out.join("checkpoints");
    let mut before: Vec<String> =
        std::fs::read_dir(&ckpts).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    before.sort();
    // Damage every tensor file (same size, other bytes): every sidecar's checksum fails. Numbered
    // checkpoints are hard links of rolling ones: flip each file's bytes once, not once per name.
    let mut seen = std::collections::BTreeSet::new();
    for name in before.iter().filter(|n| n.ends_with(".safetensors")) {
        let p = ckpts.join(name);
        if !seen.insert(std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&p).unwrap())) {
            continue;
        }
        let mut bytes = std::fs::read(&p).unwrap();
        let n = bytes.len();
        bytes[n - 10] ^= 0xff;
        std::fs::write(&p, bytes).unwrap();
    }
    let metrics_before = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let Err(e) = spawn(c, OnNonFinite::Stop, dino_tui::cmd::evaluator::evaluator()) else {
        panic!("a run with no usable checkpoint started")
    };
    let e = format!("{e:#}");
    assert!(e.contains("no usable checkpoint") && e.contains("nothing was deleted") && e.contains("checksum"), "{e}");
    let mut after: Vec<String> =
        std::fs::read_dir(&ckpts).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    after.sort();
    assert_eq!(before, after, "no checkpoint file was removed");
    assert_eq!(std::fs::read_to_string(out.join("metrics.jsonl")).unwrap(), metrics_before, "no duplicate iterations appended");
}

#[test]
fn checkpoint_events_name_a_file_of_their_own_with_the_content_id() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    common::demo_data(&d.path().join("data"), 8);
    let out = d.path().join("run");
    let c = common::tiny_config(&d.path().join("data"), &out);
    let (events, _) = drive(spawn(c, OnNonFinite::Stop, dino_tui::cmd::evaluator::evaluator()).unwrap(), |_, _| {});
    let saved: Vec<_> = events.iter().filter_map(|e| if let Event::CheckpointSaved(i) = e { Some(i.clone()) } else { None }).collect();
    assert_eq!(saved.len(), 3);
    for info in &saved {
        let name = info.path.file_name().unwrap().to_string_lossy().into_owned();
        assert_ne!(name, checkpoint::LATEST, "a history row must not point at the file that moves on");
        let meta = checkpoint::read_meta(&info.path).unwrap();
        assert_eq!(meta.iter, info.iter);
        assert_eq!(meta.content_id(), info.content_id, "{name}");
    }
}

/// A short run under CPU bfloat16 autocast (`use_fp16` on a CPU with bfloat16 instructions)
/// follows the float32 run's loss curve: same data, seed and crops, each iteration's loss within
/// 2 % and the mean over the run within 0.5 %. A precision warning is sent only where the CPU
/// lacks bfloat16 (then the two runs are the same float32 run and the test says so).
#[test]
fn a_short_bf16_run_follows_the_float32_loss_curve() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    common::demo_data(&data, 8);
    let run = |name: &str, fp16: bool| {
        let mut c = common::tiny_config(&data, &d.path().join(name));
        c.model.embed_dim = Some(48);
        c.model.num_heads = Some(3);
        c.model.depth = Some(2);
        c.optim.epochs = 2;
        c.optim.use_fp16 = fp16;
        let (events, state) = drive(spawn(c, OnNonFinite::Stop, dino_tui::cmd::evaluator::evaluator()).unwrap(), |_, _| {});
        assert_eq!(state, RunState::Finished);
        let warned = events.iter().any(|e| matches!(e, Event::Warning { message } if message.contains("use_fp16")));
        (losses(&events), warned)
    };
    let (fp32, fp32_warned) = run("fp32", false);
    let (bf16, bf16_warned) = run("bf16", true);
    assert!(!fp32_warned);
    if dino_tui::model::autocast::cpu_has_bf16() && dino_tui::model::autocast::AVAILABLE {
        assert!(!bf16_warned, "a CPU with bfloat16 runs it without a warning");
    } else {
        assert!(bf16_warned, "a CPU without bfloat16 says so");
        eprintln!("SKIPPED (bf16 part): this CPU has no bfloat16 instructions");
    }
    assert_eq!(fp32.len(), bf16.len());
    let mean = |l: &[(usize, f64)]| l.iter().map(|(_, v)| v).sum::<f64>() / l.len() as f64;
    for ((i, a), (_, b)) in bf16.iter().zip(&fp32) {
        assert!((a - b).abs() <= 0.02 * b.abs(), "iteration {i}: bf16 loss {a} vs float32 {b}");
    }
    let (ma, mb) = (mean(&bf16), mean(&fp32));
    eprintln!("mean loss over {} iterations: bf16 {ma:.5}, float32 {mb:.5}", fp32.len());
    assert!((ma - mb).abs() <= 0.005 * mb.abs(), "mean loss: bf16 {ma} vs float32 {mb}");
}
