//! The experiment of the original README: accuracy against the number of labeled images per
//! class. For each N and seed, N images per class are drawn from `train/` and the classifiers
//! are tested on all of `val/`:
//! (a) weighted k-NN and (b) a linear probe on the frozen self-supervised features,
//! (c) the same on the same backbone with random weights, and
//! (d) the same architecture trained from scratch on those images (fixed budget).
//! Both probes use the backbone's output features (CLS token / pooled), L2-normalised.

use super::args::LabelEfficiencyArgs;
use super::commands::{Prepared, ProgressBar};
use super::features::{eval_pixels, l2_normalize, FeatureKind, LabeledFeatures};
use super::knn::knn_report;
use super::linear::{train, CachedBatches, LinearHead, ProbeConfig};
use super::plot::{self, Series, PALETTE};
use super::sampling;
use super::source::{self, SourceSpec};
use super::supervised::{self, SupervisedConfig};
use super::EvalError;
use anyhow::Result;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use tch::Device;

/// Linear probe settings for small labeled sets: L2-normalised features, a fixed learning rate
/// (the batch rule would starve a 4-image set), and at least this many optimizer steps.
const PROBE_LR: f64 = 1.0;
const PROBE_MIN_STEPS: usize = 300;
const PROBE_BATCH: usize = 64;

/// `N` per class: a number or `all`.
pub fn parse_per_class(values: &[String]) -> Result<Vec<Option<usize>>, EvalError> {
    values
        .iter()
        .map(|v| match v.as_str() {
            "all" => Ok(None),
            s => s
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .map(Some)
                .ok_or_else(|| EvalError::Invalid(format!("invalid value {s} for --per_class: expected a number >= 1 or `all`"))),
        })
        .collect()
}

/// Top-1 of a linear probe trained on `train`, tested on `val` (features already normalised).
pub fn probe_accuracy(
    train_f: &LabeledFeatures,
    val: &LabeledFeatures,
    epochs: usize,
    seed: u64,
    device: Device,
) -> Result<f64, EvalError> {
    let per_epoch = train_f.len().div_ceil(PROBE_BATCH).max(1);
    let epochs = epochs.max(PROBE_MIN_STEPS.div_ceil(per_epoch));
    let cfg = ProbeConfig { epochs, lr: PROBE_LR, batch_size: PROBE_BATCH, val_freq: epochs, seed };
    tch::manual_seed(seed as i64);
    let dim = train_f.features.size()[1];
    let mut head = LinearHead::new(dim, train_f.num_classes() as i64, device);
    let mut batches = CachedBatches { features: train_f, batch_size: PROBE_BATCH, seed, device };
    train(&mut head, &mut batches, val, &cfg, 0, 0.0, &mut |_, _, _| Ok(()))?;
    Ok(head.evaluate(&val.features, &val.labels).acc1)
}

#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub method: String,
    /// Labeled images per class asked for (`None`: all).
    pub per_class: Option<usize>,
    /// Mean number actually drawn per class (all may differ per class).
    pub per_class_actual: f64,
    pub accuracies: Vec<f64>,
    pub mean: f64,
    pub std: f64,
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len().saturating_sub(1).max(1)) as f64;
    (mean, if v.len() > 1 { var.sqrt() } else { 0.0 })
}

fn normalised(f: &LabeledFeatures) -> LabeledFeatures {
    LabeledFeatures {
        features: l2_normalize(&f.features),
        labels: f.labels.shallow_clone(),
        classes: f.classes.clone(),
        from_cache: f.from_cache,
    }
}

pub fn run_command(args: &LabelEfficiencyArgs) -> Result<i32> {
    let m = &args.model;
    let ns = parse_per_class(&args.per_class)?;
    if args.seeds < 1 || args.nb_knn < 1 || args.temperature <= 0.0 {
        anyhow::bail!("--seeds and --nb_knn must be at least 1 and --temperature > 0");
    }
    let p = Prepared::new(m)?;
    let dino_train = normalised(&p.features(m, "train", FeatureKind::Cls)?);
    let dino_val = normalised(&p.features(m, "val", FeatureKind::Cls)?);
    // The baseline: the same architecture with random weights.
    let rspec = SourceSpec::teacher("random", p.device, m.seed);
    let random = source::random_like(&p.source.config, &rspec)?;
    let random_prepared = Prepared { source: random, layout: p.layout.clone(), cache: p.cache.clone(), device: p.device };
    let rand_train = normalised(&random_prepared.features(m, "train", FeatureKind::Cls)?);
    let rand_val = normalised(&random_prepared.features(m, "val", FeatureKind::Cls)?);
    let train_split = p.split("train")?;
    let val_split = p.split("val")?;
    let num_classes = train_split.classes.len();
    let sup = (args.supervised_epochs > 0).then(|| SupervisedConfig {
        epochs: args.supervised_epochs as usize,
        device: p.device,
        ..Default::default()
    });
    let (train_images, val_x, val_y) = if sup.is_some() {
        let opts = p.options(m, FeatureKind::Cls);
        (
            supervised::load_images(&train_split.files)?,
            Some(eval_pixels(&val_split.files, opts.transform, opts.num_workers)?),
            Some(dino_val.labels.shallow_clone()),
        )
    } else {
        (vec![], None, None)
    };
    let methods: Vec<&str> = {
        let mut v = vec!["DINO k-NN", "DINO linear", "random k-NN", "random linear"];
        if sup.is_some() {
            v.push("supervised");
        }
        v
    };
    let total = ns.len() * args.seeds as usize;
    let mut bar = ProgressBar::new("label draws");
    let mut cells: Vec<Cell> = vec![];
    let started = std::time::Instant::now();
    for (i, &n) in ns.iter().enumerate() {
        let mut acc: Vec<Vec<f64>> = vec![vec![]; methods.len()];
        let mut drawn = 0usize;
        for seed in 0..args.seeds {
            let idx = sampling::per_class(&train_split.labels, num_classes, n, m.seed + seed);
            drawn = idx.len();
            let k = [args.nb_knn];
            let dt = dino_train.subset(&idx);
            let rt = rand_train.subset(&idx);
            acc[0].push(knn_report(&dt, &dino_val, &k, args.temperature).results[0].top1);
            acc[1].push(probe_accuracy(&dt, &dino_val, args.linear_epochs.max(1) as usize, seed, p.device)?);
            acc[2].push(knn_report(&rt, &rand_val, &k, args.temperature).results[0].top1);
            acc[3].push(probe_accuracy(&rt, &rand_val, args.linear_epochs.max(1) as usize, seed, p.device)?);
            if let (Some(cfg), Some(vx), Some(vy)) = (&sup, &val_x, &val_y) {
                let imgs: Vec<_> = idx.iter().map(|&j| train_images[j].clone()).collect();
                let labels: Vec<usize> = idx.iter().map(|&j| train_split.labels[j]).collect();
                let c = SupervisedConfig { seed: m.seed + seed, ..*cfg };
                acc[4].push(supervised::train_and_test(&p.source.config, &imgs, &labels, num_classes, vx, vy, &c)?);
            }
            bar.update(i * args.seeds as usize + seed as usize + 1, total);
        }
        for (method, a) in methods.iter().zip(acc) {
            let (mean, std) = mean_std(&a);
            cells.push(Cell {
                method: (*method).into(),
                per_class: n,
                per_class_actual: drawn as f64 / num_classes as f64,
                accuracies: a,
                mean,
                std,
            });
        }
    }
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let table = table(&cells, &ns, &methods, args.seeds);
    let series: Vec<Series> = methods
        .iter()
        .enumerate()
        .map(|(i, name)| Series {
            name: (*name).into(),
            points: cells.iter().filter(|c| c.method == *name).map(|c| (c.per_class_actual, c.mean, c.std)).collect(),
            color: PALETTE[i % PALETTE.len()],
        })
        .collect();
    let out = args.output_dir.clone().unwrap_or_else(|| match &p.source.run_dir {
        Some(r) => r.join("evals"),
        None => PathBuf::from("label-efficiency"),
    });
    std::fs::create_dir_all(&out)?;
    let label = super::record::label(p.source.epoch, p.source.iter);
    let svg_path = out.join(format!("label-efficiency-{label}.svg"));
    let title = format!("{}: top-1 on {} val images, mean ± std over {} draws", p.source.config.arch, val_split.len(), args.seeds);
    std::fs::write(&svg_path, plot::svg(&series, &title))?;
    let txt_path = out.join(format!("label-efficiency-{label}.txt"));
    std::fs::write(&txt_path, &table)?;
    let json = serde_json::json!({
        "weights": p.source.description,
        "num_classes": num_classes,
        "num_val": val_split.len(),
        "seeds": args.seeds,
        "nb_knn": args.nb_knn,
        "temperature": args.temperature,
        "linear_epochs": args.linear_epochs,
        "supervised_epochs": args.supervised_epochs,
        "minutes": minutes,
        "cells": cells,
        "plot": svg_path,
    });
    if args.json {
        println!("{json}");
    } else {
        print!("{table}");
        println!("{}", plot::terminal(&series, 120, 48));
        println!("plot saved to {}; table to {}", svg_path.display(), txt_path.display());
    }
    if let Some(r) = &p.source.run_dir {
        let path = super::record::write_result(r, "label-efficiency", &label, &json)?;
        super::record::append_event(r, &serde_json::json!({ "kind": "label-efficiency", "file": path, "plot": svg_path }))?;
    }
    Ok(0)
}

/// Mean ± std per (N, method), one row per N.
pub fn table(cells: &[Cell], ns: &[Option<usize>], methods: &[&str], seeds: u64) -> String {
    let mut s = format!("top-1 (%) on val/, mean ± std over {seeds} draws of the labeled images\n{:>10}", "N/class");
    for m in methods {
        let _ = write!(s, "  {m:>15}");
    }
    s.push('\n');
    for n in ns {
        let label = n.map(|v| v.to_string()).unwrap_or_else(|| "all".into());
        let _ = write!(s, "{label:>10}");
        for m in methods {
            match cells.iter().find(|c| c.per_class == *n && c.method == *m) {
                Some(c) => {
                    let _ = write!(s, "  {:>15}", format!("{:.1} ± {:.1}", c.mean, c.std));
                }
                None => {
                    let _ = write!(s, "  {:>15}", "-");
                }
            }
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_class_values_parse() {
        let v: Vec<String> = ["1", "10", "all"].iter().map(|s| s.to_string()).collect();
        assert_eq!(parse_per_class(&v).unwrap(), vec![Some(1), Some(10), None]);
        assert!(parse_per_class(&["0".to_string()]).is_err());
        assert!(parse_per_class(&["x".to_string()]).is_err());
    }

    #[test]
    fn mean_and_sample_std() {
        assert_eq!(mean_std(&[1.0, 3.0]), (2.0, 2f64.sqrt()));
        assert_eq!(mean_std(&[5.0]), (5.0, 0.0));
    }
}
