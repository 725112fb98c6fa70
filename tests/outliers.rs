//! Outlier scoring end to end on real image files: images filed under the wrong class rank at the
//! top of label disagreement, and `dino outliers` writes its CSV, duplicates and map.
// Test code (the lints of clippy.toml cover #[test] functions, not their helpers here): a failed
// assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dino_tui::config::TrainConfig;
use dino_tui::data::{DataLayout, Split};
use dino_tui::eval::features::{EvalTransform, ExtractOptions, FeatureKind};
use dino_tui::eval::outlier_report::{read_rows, score_split, OutlierParams, ScoreKind};
use dino_tui::eval::source::{random_like, SourceSpec};
use std::path::Path;

const CLASSES: [(&str, [u8; 3]); 3] = [("red", [200, 30, 30]), ("green", [30, 200, 30]), ("blue", [30, 30, 200])];

/// Flat-coloured 32 px images with noise, 20 per class; `misfiled` images of one class are written
/// into another class's folder. Returns their paths relative to the root.
fn colour_set(root: &Path, misfiled: &[(usize, usize)]) -> Vec<String> {
    let mut wrong = vec![];
    for split in ["train", "val", "pretext"] {
        for (c, (name, rgb)) in CLASSES.iter().enumerate() {
            for i in 0..20u32 {
                let target = misfiled.iter().find(|(from, _)| *from == c).filter(|_| split == "train" && i < 2).map(|(_, to)| *to);
                let folder = match (split, target) {
                    ("pretext", _) => root.join("pretext"),
                    (_, Some(to)) => root.join(split).join(CLASSES[to].0),
                    _ => root.join(split).join(name),
                };
                std::fs::create_dir_all(&folder).unwrap();
                let img = image::RgbImage::from_fn(32, 32, |x, y| {
                    let n = ((x * 7 + y * 13 + i * 31) % 23) as u8;
                    image::Rgb([rgb[0].saturating_add(n), rgb[1].saturating_add(n), rgb[2].saturating_add(n)])
                });
                let file = folder.join(format!("{name}_{split}_{i}.png"));
                img.save(&file).unwrap();
                if target.is_some() {
                    wrong.push(file.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
    }
    wrong
}

fn tiny() -> TrainConfig {
    {
        let mut c = TrainConfig::default();
        c.model.arch = dino_tui::config::Arch::VitTiny;
        c.model.patch_size = 8;
        c.model.embed_dim = Some(24);
        c.model.depth = Some(1);
        c.model.num_heads = Some(2);
        c.crops.global_crop_size = 32;
        c.crops.local_crop_size = 16;
        c
    }
}

#[test]
fn misfiled_images_rank_first_by_label_disagreement() {
    let d = tempfile::tempdir().unwrap();
    // Two red images filed under green, two blue under red.
    let wrong = colour_set(d.path(), &[(0, 1), (2, 0)]);
    assert_eq!(wrong.len(), 4);
    let layout = DataLayout::discover(d.path()).unwrap();
    let train: &Split = layout.train().unwrap();
    let spec = SourceSpec::teacher("random", tch::Device::Cpu, 0);
    let src = random_like(&tiny(), &spec).unwrap();
    let opts = ExtractOptions {
        transform: EvalTransform::for_crop(32),
        batch_size: 16,
        num_workers: 1,
        device: tch::Device::Cpu,
        kind: FeatureKind::Cls,
    };
    let params = OutlierParams { k: 5, temperature: 0.07, duplicate_threshold: 0.9999, score: ScoreKind::Disagreement, seed: 0 };
    let report = score_split(&src.backbone, train, layout.root(), &opts, None, &params, &mut |_, _| {}).unwrap();
    assert_eq!(report.rows.len(), 60);
    let top: Vec<&str> = report.rows.iter().take(wrong.len()).map(|r| r.path.as_str()).collect();
    let recall = wrong.iter().filter(|w| top.contains(&w.as_str())).count();
    assert_eq!(recall, wrong.len(), "recall@4 of the misfiled images: {top:?} vs {wrong:?}");
    for r in report.rows.iter().take(wrong.len()) {
        assert_ne!(r.predicted, r.label, "{}: the neighbours vote for the true colour", r.path);
    }
}

#[test]
fn dino_outliers_writes_csv_duplicates_and_map() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    colour_set(&data, &[(0, 1)]);
    let cfg = d.path().join("tiny.toml");
    std::fs::write(&cfg, tiny().to_toml()).unwrap();
    let csv = d.path().join("out/rows.csv");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dino"))
        .args(["outliers", "--pretrained_weights", "random", "--device", "cpu", "--top", "5", "--k", "5"])
        .arg("--config")
        .arg(&cfg)
        .arg("--data_path")
        .arg(&data)
        .arg("--csv")
        .arg(&csv)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("60 images of train by disagreement"), "{stdout}");
    let header = std::fs::read_to_string(&csv).unwrap().lines().next().unwrap().to_string();
    assert_eq!(header, "path,split,label,isolation,disagreement,predicted,neighbours,umap_x,umap_y");
    let rows = read_rows(&csv).unwrap();
    assert_eq!(rows.len(), 60);
    assert!(rows[0].path.starts_with("train/green/red_"), "{}", rows[0].path);
    assert!(d.path().join("out/rows-duplicates.csv").exists());
    assert!(image::open(d.path().join("out/rows.png")).is_ok(), "the map");
    // Unknown split and a disagreement score without labels are named.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_dino"))
        .args(["outliers", "--pretrained_weights", "random", "--split", "pretext", "--score", "disagreement"])
        .arg("--config")
        .arg(&cfg)
        .arg("--data_path")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("needs labels"), "{}", String::from_utf8_lossy(&bad.stderr));
}

const CIFAR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/cifar-vehicles");

/// The classes of cifar-vehicles in the order images are misfiled: each class's images go to the
/// next one's folder, across the sky/sea versus road divide (airplane -> automobile -> ship ->
/// truck -> airplane), so every planted image is of a kind its folder does not hold.
const VEHICLES: [&str; 4] = ["airplane", "automobile", "ship", "truck"];

/// A copy of cifar-vehicles' `train/` and `val/` (`pretext/` linked) plus `per_class` images of
/// each class taken from `pretext/` (by `pretext_labels.csv`) and filed under the wrong class.
/// Returns the planted paths.
fn cifar_with_misfiled(root: &Path, per_class: usize) -> Vec<String> {
    let src = Path::new(CIFAR);
    for split in ["train", "val"] {
        for class in VEHICLES {
            let to = root.join(split).join(class);
            std::fs::create_dir_all(&to).unwrap();
            for f in std::fs::read_dir(src.join(split).join(class)).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
    std::os::unix::fs::symlink(src.join("pretext"), root.join("pretext")).unwrap();
    let labels = std::fs::read_to_string(src.join("pretext_labels.csv")).unwrap();
    let mut planted = vec![];
    for (c, class) in VEHICLES.iter().enumerate() {
        let wrong = VEHICLES[(c + 1) % VEHICLES.len()];
        let files = labels.lines().skip(1).filter_map(|l| l.split_once(',')).filter(|(_, label)| label == class);
        for (file, _) in files.take(per_class) {
            let name = format!("misfiled-{class}-{}", Path::new(file).file_name().unwrap().to_string_lossy());
            let rel = format!("train/{wrong}/{name}");
            std::fs::copy(src.join(file), root.join(&rel)).unwrap();
            planted.push(rel);
        }
    }
    planted
}

/// Recall in the top `k` rows of a report sorted by disagreement.
fn recall_at(rows: &[dino_tui::eval::outlier_report::OutlierRow], planted: &[String], k: usize) -> usize {
    rows.iter().take(k).filter(|r| planted.contains(&r.path)).count()
}

/// The criterion on real data: 12 cifar-vehicles images filed under the wrong class rank
/// near the top of label disagreement with a trained teacher. Long (it trains the cifar-quick
/// preset, about 8 minutes on 2 cores, unless `DINO_OUTLIER_WEIGHTS` names a run or checkpoint),
/// so outside the default test path: `cargo test --release --test outliers -- --ignored`.
/// The threshold (9 of 12 in the top 50, 5 %) is the target for a teacher that separates the
/// classes; the 10-epoch CPU preset (53 % k-NN) is far from it (figures in docs/outliers.md).
#[test]
#[ignore = "long: trains cifar-quick; run with --ignored (DINO_OUTLIER_WEIGHTS=RUN reuses a checkpoint)"]
fn misfiled_cifar_vehicles_images_rank_near_the_top_with_a_trained_teacher() {
    if !Path::new(CIFAR).join("pretext_labels.csv").exists() {
        eprintln!("skipped: {CIFAR} is absent");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let planted = cifar_with_misfiled(&data, 3);
    assert_eq!(planted.len(), 12);
    let weights = std::env::var("DINO_OUTLIER_WEIGHTS").unwrap_or_else(|_| {
        let run = d.path().join("run");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dino"))
            .args(["train", "--config", "cifar-quick", "--headless", "--eval_knn_every", "0", "--data_path", CIFAR])
            .arg("--output_dir")
            .arg(&run)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        run.display().to_string()
    });
    // Scored as a user would: `dino outliers` with its defaults (train/, disagreement, k = 10, T = 0.07).
    let csv = d.path().join("misfiled.csv");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dino"))
        .args(["outliers", "--pretrained_weights", weights.as_str(), "--top", "12"])
        .arg("--data_path")
        .arg(&data)
        .arg("--csv")
        .arg(&csv)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows = read_rows(&csv).unwrap();
    assert_eq!(rows.len(), 1012);
    let (top12, top50) = (recall_at(&rows, &planted, 12), recall_at(&rows, &planted, 50));
    eprintln!("{weights}: {top12}/12 misfiled images in the top 12, {top50}/12 in the top 50 (5 %) of 1012");
    assert!(top50 >= 9, "recall@50 {top50}/12: the teacher does not separate the classes well enough");
}
