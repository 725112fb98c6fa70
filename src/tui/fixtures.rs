//! A deterministic recorded run for tests: the same events, values and telemetry every time, so
//! rendering snapshots are stable.

use super::app::App;
use super::keymap::KeyMap;
use super::theme::Theme;
use super::trainer_events::apply_event;
use crate::protocol::schedule::{CurveSpec, Schedule, ScheduleName};
use crate::protocol::*;
use crate::telemetry::{GpuSample, GpuStatus, HostSample, Telemetry};
use crossbeam_channel::Receiver;

pub const EPOCHS: usize = 10;
pub const NITER: usize = 50;
pub const OUT_DIM: usize = 4096;

pub fn run_info() -> RunInfo {
    RunInfo {
        run_dir: "runs/demo".into(),
        name: "demo".into(),
        arch: "vit_tiny".into(),
        device: "cuda:0".into(),
        epochs: EPOCHS,
        niter_per_ep: NITER,
        batch_size: 64,
        out_dim: OUT_DIM,
        num_images: 3200,
        start_iter: 0,
    }
}

pub fn schedules() -> Vec<(ScheduleName, Schedule)> {
    let cos = |base, final_value, warmup_epochs| CurveSpec::Cosine { base, final_value, warmup_epochs, start_warmup_value: 0.0 };
    vec![
        (ScheduleName::Lr, Schedule::new(cos(5e-4, 1e-6, 2), EPOCHS, NITER)),
        (ScheduleName::Wd, Schedule::new(cos(0.04, 0.4, 0), EPOCHS, NITER)),
        (ScheduleName::TeacherTemp, Schedule::new(CurveSpec::WarmupConstant { start: 0.04, value: 0.07, warmup_epochs: 3 }, EPOCHS, NITER)),
        (ScheduleName::Momentum, Schedule::new(cos(0.996, 1.0, 0), EPOCHS, NITER)),
    ]
}

pub fn metrics(i: usize, scheds: &[(ScheduleName, Schedule)]) -> IterMetrics {
    let ln_k = (OUT_DIM as f64).ln();
    let x = i as f64;
    let value = |n: ScheduleName| scheds.iter().find(|(s, _)| *s == n).map_or(0.0, |(_, s)| s.value(i));
    IterMetrics {
        iter: i,
        epoch: i / NITER,
        loss: ln_k * (0.55 + 0.4 * (-x / 80.0).exp()) + 0.08 * (x * 0.7).sin(),
        lr: value(ScheduleName::Lr),
        wd: value(ScheduleName::Wd),
        teacher_temp: value(ScheduleName::TeacherTemp),
        momentum: value(ScheduleName::Momentum),
        iter_time: 0.25,
        data_time: 0.02 + 0.01 * ((i % 7) as f64 / 7.0),
        images_per_s: 256.0,
        teacher_entropy: 6.0 - 2.0 * (1.0 - (-x / 120.0).exp()),
        kl: 0.4 + 0.1 * (x * 0.3).cos(),
        koleo: None,
        time: 1_700_000_000.0 + x * 0.25,
    }
}

/// `Started`, `Schedules`, running state, the random-weights k-NN, `n` iterations with epoch summaries, a checkpoint, an
/// alarm and a warning.
pub fn events(n: usize) -> Vec<Event> {
    let scheds = schedules();
    let mut ev = vec![
        Event::Started(run_info()),
        Event::Schedules { schedules: scheds.clone() },
        Event::State { state: RunState::Running, iter: 0 },
    ];
    // The random-weights baseline a run that evaluates k-NN measures at its start.
    let baseline = serde_json::json!({ "kind": "knn", "random_weights": true, "results": [{ "k": 20, "top1": 24.5 }] });
    ev.push(Event::EvalResult { kind: EvalKind::Knn, summary: "k-NN top-1 24.50% (k=20), random weights".into(), json: baseline });
    for i in 0..n {
        let m = metrics(i, &scheds);
        ev.push(Event::Metrics(m.clone()));
        if (i + 1) % NITER == 0 {
            ev.push(Event::Epoch(EpochSummary { epoch: i / NITER, train_loss: m.loss, train_lr: m.lr, train_wd: m.wd }));
            let (epoch, top1) = ((i + 1) / NITER, 40.0 + 6.0 * ((i + 1) / NITER) as f64);
            let json = serde_json::json!({ "kind": "knn", "epoch": epoch, "iter": i + 1, "results": [{ "k": 20, "top1": top1 }] });
            ev.push(Event::EvalResult { kind: EvalKind::Knn, summary: format!("k-NN top-1 {top1:.2}% (k=20) at epoch {epoch}"), json });
        }
        if i == 199 {
            ev.push(Event::CheckpointSaved(CheckpointInfo {
                path: "runs/demo/checkpoints/checkpoint0003.pth".into(),
                epoch: 3,
                iter: 200,
                bytes: 123_456_789,
                loss: Some(m.loss),
                time: m.time,
                content_id: None,
            }));
            let json = serde_json::json!({ "kind": "linear", "epoch": 3, "iter": 200, "test_acc1": 63.5 });
            ev.push(Event::EvalResult { kind: EvalKind::Linear, summary: "linear top-1 63.50% at epoch 3".into(), json });
        }
    }
    ev.push(Event::Alarm {
        kind: AlarmKind::DimensionCollapse,
        message: "teacher entropy fell below 0.5".into(),
        iter: n.saturating_sub(1),
    });
    ev.push(Event::Warning { message: "skipped unreadable file pretext/img_0042.jpg".into() });
    ev
}

pub fn telemetry() -> Telemetry {
    Telemetry {
        gpus: GpuStatus::Gpus(vec![GpuSample {
            index: 0,
            name: "NVIDIA H100".into(),
            util_percent: Some(87),
            mem_used: Some(21 << 30),
            mem_total: Some(80 << 30),
            temperature_c: Some(64),
            power_w: Some(312.0),
        }]),
        host: HostSample { cpu_percent: 42.0, cpu_count: 16, ram_used: 24 << 30, ram_total: 128 << 30, process_mem: 3 << 30 },
    }
}

/// An app that has seen `n` iterations, with the command receiver to inspect what it sends.
pub fn app(n: usize) -> (App, Receiver<Command>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut app = App::new(tx, Theme::default_theme(), KeyMap::default());
    for e in events(n) {
        apply_event(&mut app, e);
    }
    // The alarm's footer message would hide the key hints in every snapshot.
    app.shell.status = None;
    app.trainer.telemetry = telemetry();
    (app, rx)
}

/// Loads an outlier report into the app's Outliers tab: twelve images of three classes, real PNG
/// files in a temporary data set (returned, to keep alive), the map on a ring.
pub fn with_outliers(app: &mut App) -> tempfile::TempDir {
    use crate::eval::outlier_report::{write_csv, OutlierRow};
    let d = tempfile::tempdir().expect("temp dir");
    let classes = ["airplane", "ship", "truck"];
    let mut rows = vec![];
    for i in 0..12usize {
        let label = classes[i % 3];
        let path = format!("train/{label}/{i:04}.png");
        let file = d.path().join(&path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("class folder");
        // A diagonal gradient with a class-coloured square: something recognisable in half-blocks.
        let img = image::RgbImage::from_fn(16, 16, |x, y| {
            let inside = (4..12).contains(&x) && (4..12).contains(&y);
            if inside {
                image::Rgb([[220, 40, 40], [40, 160, 40], [40, 40, 220]][i % 3])
            } else {
                image::Rgb([(x * 16) as u8, (y * 16) as u8, 128])
            }
        });
        img.save(&file).expect("fixture image");
        let angle = i as f32 * std::f32::consts::TAU / 12.0;
        let predicted = if i == 4 { "truck" } else { label };
        rows.push(OutlierRow {
            path,
            split: "train".into(),
            label: label.into(),
            auto: Some(if i == 4 { 1.0 } else { 0.05 * i as f64 }),
            kind: if i % 2 == 0 { "mislabel" } else { "stranger" }.into(),
            mislabel: Some(if i == 4 { 0.9 } else { 0.01 * i as f64 }),
            stranger: Some(0.3 + 0.01 * i as f64),
            isolation: 0.05 + 0.01 * i as f64,
            disagreement: Some(if i == 4 { 0.97 } else { 0.02 * i as f64 }),
            predicted: predicted.into(),
            suggested: if i == 4 { "truck" } else { "" }.into(),
            neighbours: (1..=3).map(|k| format!("train/{}/{:04}.png", classes[(i + k) % 3], (i + k) % 12)).collect::<Vec<_>>().join(";"),
            umap_x: 5.0 * angle.cos(),
            umap_y: 5.0 * angle.sin(),
        });
    }
    let csv = d.path().join("outliers.csv");
    write_csv(&csv, &rows).expect("fixture csv");
    // As a report records it: k-NN of 11 of the 12 images, random weights 7 of 12 (features
    // that separate the classes, so image 4 is called a likely label error).
    let evidence = crate::eval::evidence::FeatureEvidence { knn: 91.7, random: Some(58.3), chance: 33.3, images: 12, folds: 3, k: 3 };
    app.outliers.load_report(&csv, Some(evidence), Some(d.path().to_path_buf()), None).expect("fixture report");
    d
}
