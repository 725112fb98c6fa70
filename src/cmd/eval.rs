//! `dino eval ...`: resolve the flags, run the evaluation, print a table (or one JSON object),
//! and record the result in the run directory when the weights belong to a run.

use super::eval_args::{KnnArgs, OutlierArgs};
use super::eval_setup::Prepared;
use super::progress::Progress;
use crate::eval::features::{FeatureKind, LabeledFeatures};
use crate::eval::knn::knn_report;
use crate::eval::record;
use crate::files::ShowPath;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use tch::Tensor;

const FEATURES_FILE: &str = "features.safetensors";
const CLASSES_FILE: &str = "classes.json";

fn dump_features(dir: &Path, train: &LabeledFeatures, val: &LabeledFeatures) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.shown()))?;
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
        crate::model::weights::read_safetensors(&path).with_context(|| format!("cannot read {}", path.shown()))?.into_iter().collect();
    let get = |k: &str| map.get(k).map(|t| t.shallow_clone()).with_context(|| format!("{}: no tensor {k}", path.shown()));
    let classes: Vec<String> = match crate::files::read(&dir.join(CLASSES_FILE)) {
        Ok(b) => serde_json::from_slice(&b)?,
        Err(_) => {
            let max = get("trainlabels")?.max().int64_value(&[]);
            (0..=max).map(|i| i.to_string()).collect()
        }
    };
    let f = |feat: &str, lab: &str| -> Result<LabeledFeatures> { Ok(LabeledFeatures::new(get(feat)?, get(lab)?, classes.clone(), true)) };
    Ok((f("trainfeat", "trainlabels")?, f("testfeat", "testlabels")?))
}

/// The k-NN of `m`'s features, train/ as the bank and val/ as the queries, as `dino eval knn`
/// computes it (features cached as it caches them), without printing or recording anything.
pub fn knn_of(m: &super::eval_args::ModelArgs, ks: &[usize], temperature: f64) -> Result<crate::eval::KnnReport> {
    let p = Prepared::new(m)?;
    let train = p.features(m, "train", FeatureKind::Cls)?;
    let val = p.features(m, "val", FeatureKind::Cls)?;
    Ok(knn_report(&train, &val, ks, temperature))
}

pub fn knn(args: &KnnArgs) -> Result<i32> {
    super::eval_args::check_temperature(args.temperature)?;
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
        crate::say_err!("features saved in {}", dir.shown());
    }
    let warnings = prepared.as_ref().map(|p| p.layout.warnings().to_vec()).unwrap_or_default();
    let report = crate::eval::KnnReport { warnings, ..knn_report(&train, &val, &args.nb_knn, args.temperature) };
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
            crate::say_err!("result written to {}", path.shown());
        }
    }
    Ok(0)
}

/// The flags of `dino outliers` that need no model, checked before one is loaded.
fn check_outlier_args(args: &OutlierArgs) -> Result<()> {
    super::eval_args::check_temperature(args.temperature)?;
    if args.k == 0 {
        anyhow::bail!("--k must be at least 1");
    }
    if args.folds < 2 {
        anyhow::bail!("--folds must be at least 2");
    }
    if let Some(map) = &args.map {
        crate::eval::figure::is_svg(map)?;
    }
    for (flag, v) in [("--split", &args.split), ("--reference", &args.reference)] {
        if let Some(v) = v.as_deref().filter(|v| !["train", "val", "pretext"].contains(v)) {
            anyhow::bail!("invalid {flag} {v}: use train, val or pretext");
        }
    }
    Ok(())
}

pub fn outliers(args: &OutlierArgs) -> Result<i32> {
    use crate::eval::outlier_report::{run_files, score_split, write_report, OutlierParams};
    use crate::eval::source::{random_like, SourceSpec};
    check_outlier_args(args)?;
    let m = &args.model;
    let p = Prepared::new_any_layout(m)?;
    let name = args.split.clone().unwrap_or_else(|| if p.layout.split_named("train").is_some() { "train" } else { "pretext" }.into());
    let split = p.split(&name)?;
    if args.score.needs_labels() && !split.is_labeled() {
        anyhow::bail!("--score {} needs labels; {name} has no class folders (use --score stranger or auto)", args.score.name());
    }
    let reference = match args.reference.as_deref() {
        Some(r) if r != name => Some(p.split(r)?),
        _ => None,
    };
    let params = OutlierParams {
        k: args.k,
        temperature: args.temperature,
        duplicate_threshold: args.duplicate_threshold,
        folds: args.folds,
        ..OutlierParams::new(args.score, m.seed)
    };
    let bar = Progress::new(format!("features {name}"));
    let cache = p.cache.as_ref().map(|c| (c, p.source.identity.as_str()));
    let opts = crate::eval::ExtractOptions { tta: args.tta, ..p.options(m, FeatureKind::Cls) };
    // The same network with random weights: what the features are measured against before any
    // image is called a likely label error.
    let baseline = match split.is_labeled() {
        true => Some(random_like(&p.source.config, &SourceSpec::teacher("random", p.device, m.seed))?),
        false => None,
    };
    let (backbone, root) = (&p.source.backbone, p.layout.root());
    let report = score_split(backbone, baseline.as_ref(), split, reference, root, &opts, cache, &params, &mut |d, t| bar.update(d, t))?;
    let label = format!("{name}-{}", p.source.result_label(p.layout.root()));
    let (csv, dups, map) = match &p.source.run_dir {
        Some(run) => run_files(run, &label),
        None => (PathBuf::from("outliers.csv"), PathBuf::from("outliers-duplicates.csv"), PathBuf::from("outliers-map.png")),
    };
    let (csv, dups, map) = match &args.csv {
        Some(given) => beside_csv(given, args.map.as_deref()),
        None => (csv, Some(dups), Some(args.map.clone().unwrap_or(map))),
    };
    let json = write_report(&report, &csv, dups.as_deref(), map.as_deref(), args.top)?;
    print_outliers(&report, args.top);
    let or_none = |p: &Option<PathBuf>| p.as_ref().map_or("none (no side file beside a device)".into(), |p| p.shown().to_string());
    crate::say_err!("rows: {}\nduplicates: {}\nmap: {}", csv.shown(), or_none(&dups), or_none(&map));
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

/// `--csv FILE`'s side files: `FILE-duplicates.csv` and (without `--map`) `FILE.png` beside it,
/// none when FILE is a device or a link to one (`/dev/stdout`: nothing may land in `/dev`).
fn beside_csv(csv: &Path, map: Option<&Path>) -> (PathBuf, Option<PathBuf>, Option<PathBuf>) {
    let target = crate::files::Target::of(csv).ok();
    let Some(crate::files::Target::Replace(file)) = target else {
        return (csv.to_path_buf(), None, map.map(Path::to_path_buf));
    };
    let dups = file.with_file_name(format!("{}-duplicates.csv", file.file_stem().unwrap_or_default().to_string_lossy()));
    (csv.to_path_buf(), Some(dups), Some(map.map_or_else(|| file.with_extension("png"), Path::to_path_buf)))
}

fn print_outliers(report: &crate::eval::outlier_report::OutlierReport, top: usize) {
    use crate::eval::outlier_report::ScoreKind;
    let label_of: std::collections::HashMap<&str, &str> = report.rows.iter().map(|r| (r.path.as_str(), r.label.as_str())).collect();
    let score = report.score;
    crate::say!(
        "{} images of {} by {} (highest first; strangers against {}):",
        report.rows.len(),
        report.split,
        score.name(),
        report.reference
    );
    if !report.skipped.is_empty() {
        crate::say!("{}", crate::eval::features::Unreadable::summary(&report.skipped, 10));
    }
    if let Some(e) = &report.evidence {
        crate::say!("{}", e.line());
    }
    crate::say!(
        "{:>4}  {:>7}  {:<8}  {:>7}  {:>7}  {:>7}  {:>7}  {:<12} {:<12} path  [neighbour labels]",
        "#",
        "auto",
        "kind",
        "mislab.",
        "strang.",
        "disagr.",
        "isol.",
        "label",
        "voted"
    );
    let opt = |v: Option<f64>| v.map(|v| format!("{v:>7.4}")).unwrap_or_else(|| format!("{:>7}", "-"));
    for (i, r) in report.rows.iter().take(top).enumerate() {
        let nb: Vec<&str> = r.neighbour_paths().map(|p| label_of.get(p).copied().unwrap_or("?")).collect();
        let nb = if r.label.is_empty() { String::new() } else { format!("  [{}]", nb.join(" ")) };
        let suggested = if r.suggested.is_empty() { String::new() } else { format!("  likely label error: {}", r.suggested) };
        crate::say!(
            "{:>4}  {:>7.4}  {:<8}  {}  {}  {}  {:>7.4}  {:<12} {:<12} {}{nb}{suggested}",
            i + 1,
            r.score(ScoreKind::Auto),
            r.kind,
            opt(r.mislabel),
            opt(r.stranger),
            opt(r.disagreement),
            r.isolation,
            r.label,
            r.predicted,
            r.path
        );
    }
    if let Some(joint) = &report.confident_joint {
        let errors = match report.claims_label_errors() {
            true => format!("{} likely label errors (confident votes that confident learning agrees with)", report.likely_label_errors()),
            false => format!("{} images off the diagonal, not claimed as label errors", joint_off_diagonal(joint)),
        };
        crate::say!("confident joint (rows: folder label, columns: class confident learning counts it under); {errors}:");
        crate::say!("{:<12} {}", "", report.classes.iter().map(|c| format!("{c:>10.10}")).collect::<Vec<_>>().join(" "));
        for (c, row) in report.classes.iter().zip(joint) {
            crate::say!("{c:<12.12} {}", row.iter().map(|n| format!("{n:>10}")).collect::<Vec<_>>().join(" "));
        }
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

fn joint_off_diagonal(joint: &[Vec<usize>]) -> usize {
    joint.iter().enumerate().map(|(i, row)| row.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, n)| n).sum::<usize>()).sum()
}
