//! Outlier scoring end to end on real image files: images filed under the wrong class rank at the
//! top of label disagreement, and `dino outliers` writes its CSV, duplicates and map.

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
    TrainConfig {
        arch: "vit_tiny".into(),
        patch_size: 8,
        embed_dim: Some(24),
        depth: Some(1),
        num_heads: Some(2),
        global_crop_size: 32,
        local_crop_size: 16,
        ..Default::default()
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
    let opts = ExtractOptions { transform: EvalTransform::for_crop(32), batch_size: 16, num_workers: 1, device: tch::Device::Cpu, kind: FeatureKind::Cls };
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
