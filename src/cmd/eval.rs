//! `dino eval ...`: resolve the flags, run the evaluation, print a table (or one JSON object),
//! and record the result in the run directory when the weights belong to a run.

use super::eval_args::{KnnArgs, OutlierArgs};
use super::eval_setup::Prepared;
use super::progress::Progress;
use crate::eval::features::{FeatureKind, LabeledFeatures};
use crate::eval::knn::knn_report;
use crate::eval::record;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use tch::Tensor;

const FEATURES_FILE: &str = "features.safetensors";
const CLASSES_FILE: &str = "classes.json";

fn dump_features(dir: &Path, train: &LabeledFeatures, val: &LabeledFeatures) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let n = |f: &LabeledFeatures| crate::eval::features::l2_normalize(&f.features);
    let tensors = [
        ("trainfeat", n(train)),
        ("testfeat", n(val)),
        ("trainlabels", train.labels.shallow_clone()),
        ("testlabels", val.labels.shallow_clone()),
    ];
    Tensor::write_safetensors(&tensors, dir.join(FEATURES_FILE))?;
    crate::run::dir::write_atomic(&dir.join(CLASSES_FILE), &serde_json::to_vec(&train.classes)?)?;
    Ok(())
}

fn load_features(dir: &Path) -> Result<(LabeledFeatures, LabeledFeatures)> {
    let path = dir.join(FEATURES_FILE);
    let map: std::collections::BTreeMap<String, Tensor> =
        Tensor::read_safetensors(&path).with_context(|| format!("cannot read {}", path.display()))?.into_iter().collect();
    let get = |k: &str| map.get(k).map(|t| t.shallow_clone()).with_context(|| format!("{}: no tensor {k}", path.display()));
    let classes: Vec<String> = match std::fs::read(dir.join(CLASSES_FILE)) {
        Ok(b) => serde_json::from_slice(&b)?,
        Err(_) => {
            let max = get("trainlabels")?.max().int64_value(&[]);
            (0..=max).map(|i| i.to_string()).collect()
        }
    };
    let f = |feat: &str, lab: &str| -> Result<LabeledFeatures> {
        Ok(LabeledFeatures { features: get(feat)?, labels: get(lab)?, classes: classes.clone(), from_cache: true })
    };
    Ok((f("trainfeat", "trainlabels")?, f("testfeat", "testlabels")?))
}

pub fn knn(args: &KnnArgs) -> Result<i32> {
    if args.temperature <= 0.0 || !args.temperature.is_finite() {
        anyhow::bail!("invalid value {} for --temperature: expected a number > 0", args.temperature);
    }
    if args.nb_knn.contains(&0) {
        anyhow::bail!("--nb_knn values must be at least 1");
    }
    let (train, val, prepared) = match &args.load_features {
        Some(dir) => {
            let (t, v) = load_features(dir)?;
            (t, v, None)
        }
        None => {
            let p = Prepared::new(&args.model)?;
            let t = p.features(&args.model, "train", FeatureKind::Cls)?;
            let v = p.features(&args.model, "val", FeatureKind::Cls)?;
            (t, v, Some(p))
        }
    };
    if let Some(dir) = &args.dump_features {
        dump_features(dir, &train, &val)?;
        crate::say_err!("features saved in {}", dir.display());
    }
    let report = knn_report(&train, &val, &args.nb_knn, args.temperature);
    let json = serde_json::to_value(&report)?;
    if args.json {
        crate::say!("{json}");
    } else {
        crate::say!("{}", report.table().trim_end());
    }
    if let Some(p) = &prepared {
        let mut full = json.clone();
        if let Some(o) = full.as_object_mut() {
            o.insert("temperature".into(), args.temperature.into());
            o.insert("weights".into(), p.source.description.clone().into());
            o.insert("epoch".into(), p.source.epoch.into());
            o.insert("iter".into(), p.source.iter.into());
        }
        if let Some(path) = p.record("knn", &full)? {
            crate::say_err!("result written to {}", path.display());
        }
    }
    Ok(0)
}

pub fn outliers(args: &OutlierArgs) -> Result<i32> {
    use crate::eval::outlier_report::{run_files, score_split, write_report, OutlierParams, ScoreKind};
    if !(args.temperature > 0.0 && args.temperature.is_finite()) {
        anyhow::bail!("invalid value {} for --temperature: expected a number > 0", args.temperature);
    }
    if args.k == 0 {
        anyhow::bail!("--k must be at least 1");
    }
    if !["train", "val", "pretext"].contains(&args.split.as_str()) {
        anyhow::bail!("invalid --split {}: use train, val or pretext", args.split);
    }
    let m = &args.model;
    let p = Prepared::new(m)?;
    let split = p.split(&args.split)?;
    let score = args.score.unwrap_or_else(|| ScoreKind::default_for(split));
    if score == ScoreKind::Disagreement && !split.is_labeled() {
        anyhow::bail!("--score disagreement needs labels; {} has no class folders (use --score isolation)", args.split);
    }
    let params =
        OutlierParams { k: args.k, temperature: args.temperature, duplicate_threshold: args.duplicate_threshold, score, seed: m.seed };
    let bar = Progress::new(format!("features {}", args.split));
    let cache = p.cache.as_ref().map(|c| (c, p.source.identity.as_str()));
    let opts = p.options(m, FeatureKind::Cls);
    let report = score_split(&p.source.backbone, split, p.layout.root(), &opts, cache, &params, &mut |d, t| bar.update(d, t))?;
    let label = format!("{}-{}", args.split, record::result_label(p.source.epoch, p.source.iter, p.layout.root()));
    let (csv, dups, map) = match &p.source.run_dir {
        Some(run) => run_files(run, &label),
        None => (PathBuf::from("outliers.csv"), PathBuf::from("outliers-duplicates.csv"), PathBuf::from("outliers-map.png")),
    };
    let csv = args.csv.clone().unwrap_or(csv);
    let map = args.map.clone().unwrap_or_else(|| if args.csv.is_some() { csv.with_extension("png") } else { map });
    let dups = if args.csv.is_some() {
        csv.with_file_name(format!("{}-duplicates.csv", csv.file_stem().unwrap_or_default().to_string_lossy()))
    } else {
        dups
    };
    let json = write_report(&report, &csv, &dups, &map, args.top)?;
    print_outliers(&report, args.top);
    crate::say_err!("rows: {}\nduplicates: {}\nmap: {}", csv.display(), dups.display(), map.display());
    if let Some(run) = &p.source.run_dir {
        let mut event = json;
        event["weights"] = p.source.description.clone().into();
        event["data_root"] = p.layout.root().display().to_string().into();
        event["epoch"] = p.source.epoch.into();
        event["iter"] = p.source.iter.into();
        record::append_event(run, &event)?;
    }
    Ok(0)
}

fn print_outliers(report: &crate::eval::outlier_report::OutlierReport, top: usize) {
    let label_of: std::collections::HashMap<&str, &str> = report.rows.iter().map(|r| (r.path.as_str(), r.label.as_str())).collect();
    let score = report.score;
    crate::say!("{} images of {} by {} (highest first):", report.rows.len(), report.split, score.name());
    crate::say!("{:>4}  {:>7}  {:>7}  {:<12} {:<12} path  [neighbour labels]", "#", "score", "isol.", "label", "predicted");
    for (i, r) in report.rows.iter().take(top).enumerate() {
        let nb: Vec<&str> = r.neighbour_paths().map(|p| label_of.get(p).copied().unwrap_or("?")).collect();
        let nb = if r.label.is_empty() { String::new() } else { format!("  [{}]", nb.join(" ")) };
        crate::say!("{:>4}  {:>7.4}  {:>7.4}  {:<12} {:<12} {}{nb}", i + 1, r.score(score), r.isolation, r.label, r.predicted, r.path);
    }
    if report.duplicates.is_empty() {
        crate::say!("no near-duplicate pairs");
    } else {
        crate::say!("{} near-duplicate pairs (cosine similarity):", report.duplicates.len());
        for d in report.duplicates.iter().take(top) {
            crate::say!("  {:.4}  {}  {}", d.similarity, d.path_a, d.path_b);
        }
    }
}
