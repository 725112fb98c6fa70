//! `dino eval label-efficiency`: accuracy against the number of labeled images per class, for k-NN,
//! the probe, random weights and supervised training from scratch, as a table and an SVG plot.

use super::eval_args::LabelEfficiencyArgs;
use super::eval_setup::Prepared;
use super::progress::Progress;
use crate::eval::features::eval_pixels;
use crate::eval::features::FeatureKind;
use crate::eval::knn::knn_report;
use crate::eval::label_efficiency::*;
use crate::eval::plot::{self, Series, PALETTE};
use crate::eval::sampling;
use crate::eval::source::{self, SourceSpec};
use crate::eval::supervised::{self, SupervisedConfig};
use anyhow::Result;
use std::path::PathBuf;
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
    let bar = Progress::new("label draws");
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
    let label = crate::eval::record::label(p.source.epoch, p.source.iter);
    let svg_path = out.join(format!("label-efficiency-{label}.svg"));
    let title = format!("{}: top-1 on {} val images, mean ± std over {} draws", p.source.config.model.arch, val_split.len(), args.seeds);
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
        let path = crate::eval::record::write_result(r, "label-efficiency", &label, &json)?;
        crate::eval::record::append_event(r, &serde_json::json!({ "kind": "label-efficiency", "file": path, "plot": svg_path }))?;
    }
    Ok(0)
}
