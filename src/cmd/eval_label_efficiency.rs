//! `dino eval label-efficiency`: accuracy against the number of labeled images per class, for k-NN,
//! the probe, random weights and supervised training from scratch, as a table and an SVG plot.

use super::eval_args::LabelEfficiencyArgs;
use super::eval_setup::Prepared;
use super::progress::Progress;
use crate::eval::features::{eval_pixels, FeatureKind, Unreadable};
use crate::eval::label_efficiency::{parse_per_class, table, Cell, Experiment, FeatureSet, Method, SupervisedData};
use crate::eval::plot::{self, AccuracyCurve, PALETTE};
use crate::eval::source::{self, SourceSpec};
use crate::eval::supervised::{self, SupervisedConfig};
use crate::files::ShowPath;
use anyhow::Result;
use std::path::PathBuf;

pub fn run_command(args: &LabelEfficiencyArgs) -> Result<i32> {
    let m = &args.model;
    let per_class = parse_per_class(&args.per_class)?;
    if args.seeds < 1 || args.nb_knn < 1 {
        anyhow::bail!("--seeds and --nb_knn must be at least 1");
    }
    super::eval_args::check_temperature(args.temperature)?;
    let p = Prepared::new(m)?;
    let features = |p: &Prepared| -> Result<FeatureSet> {
        Ok(FeatureSet::normalised(&p.features(m, "train", FeatureKind::Cls)?, &p.features(m, "val", FeatureKind::Cls)?))
    };
    let dino = features(&p)?;
    // The baseline: the same architecture with random weights.
    let random = source::random_like(&p.source.config, &SourceSpec::teacher("random", p.device, m.seed))?;
    let random = features(&Prepared { source: random, layout: p.layout.clone(), cache: p.cache.clone(), device: p.device })?;
    // Every method works on the images both feature passes could read (the rows of the features):
    // labels are drawn among them and the supervised baseline decodes only them.
    if (&dino.train.kept, &dino.val.kept) != (&random.train.kept, &random.val.kept) {
        anyhow::bail!(
            "the images readable for the trained and the random weights differ: files changed during the run, \
             or cached features are stale (--no_cache)"
        );
    }
    let train_split = p.split("train")?.subset(&dino.train.kept);
    let supervised = if args.supervised_epochs > 0 {
        let opts = p.options(m, FeatureKind::Cls);
        Some(SupervisedData {
            arch: &p.source.config,
            config: SupervisedConfig { epochs: args.supervised_epochs as usize, device: p.device, ..Default::default() },
            train_images: supervised::load_images(&train_split.files)?,
            val_x: eval_pixels(&p.split("val")?.subset(&dino.val.kept).files, opts.transform, opts.num_workers)?,
            val_y: dino.val.labels.shallow_clone(),
        })
    } else {
        None
    };
    let unreadable: Vec<Unreadable> = dino.train.skipped.iter().chain(&dino.val.skipped).cloned().collect();
    let experiment = Experiment {
        dino,
        random,
        supervised,
        train_labels: &train_split.labels,
        per_class,
        seeds: args.seeds,
        base_seed: m.seed,
        nb_knn: args.nb_knn,
        temperature: args.temperature,
        linear_epochs: args.linear_epochs.max(1) as usize,
        device: p.device,
    };
    let started = std::time::Instant::now();
    let bar = Progress::new("label draws");
    let cells = experiment.run(&mut |d, t| bar.update(d, t))?;
    report(args, &p, &experiment, &cells, &unreadable, started.elapsed().as_secs_f64() / 60.0)
}

/// Writes the table, the SVG plot and the result record, and prints them.
fn report(
    args: &LabelEfficiencyArgs,
    p: &Prepared,
    experiment: &Experiment,
    cells: &[Cell],
    unreadable: &[Unreadable],
    minutes: f64,
) -> Result<i32> {
    let methods = experiment.methods();
    let table = table(cells, &experiment.per_class, &methods, args.seeds);
    let series = series(cells, &methods);
    let out = args.output_dir.clone().unwrap_or_else(|| match &p.source.run_dir {
        Some(r) => r.join("evals"),
        None => PathBuf::from("label-efficiency"),
    });
    std::fs::create_dir_all(&out)?;
    let label = p.source.result_label(p.layout.root());
    let num_val = experiment.dino.val.len();
    let svg_path = out.join(format!("label-efficiency-{label}.svg"));
    let title = format!("{}: top-1 on {num_val} val images, mean ± std over {} draws", p.source.config.model.arch, args.seeds);
    crate::run::dir::write_atomic(&svg_path, plot::svg(&series, &title)?.as_bytes())?;
    let txt_path = out.join(format!("label-efficiency-{label}.txt"));
    crate::run::dir::write_atomic(&txt_path, table.as_bytes())?;
    let json = serde_json::json!({
        "weights": p.source.description,
        "num_classes": experiment.dino.train.num_classes(),
        "num_val": num_val,
        "seeds": args.seeds,
        "nb_knn": args.nb_knn,
        "temperature": args.temperature,
        "linear_epochs": args.linear_epochs,
        "supervised_epochs": args.supervised_epochs,
        "minutes": minutes,
        "cells": cells,
        "plot": svg_path,
        "unreadable": unreadable.len(),
        "unreadable_files": Unreadable::json(unreadable),
    });
    if args.json {
        crate::say!("{json}");
    } else {
        crate::say!("{}", table.trim_end());
        crate::say!("{}", plot::terminal(&series, 120, 48));
        crate::say!("plot saved to {}; table to {}", svg_path.shown(), txt_path.shown());
    }
    if let Some(r) = &p.source.run_dir {
        let path = crate::eval::record::write_result(r, "label-efficiency", &label, &json)?;
        crate::eval::record::append_event(
            r,
            &serde_json::json!({ "kind": "label-efficiency", "file": path.to_string_lossy(), "plot": svg_path.to_string_lossy() }),
        )?;
    }
    Ok(0)
}

/// One plotted line per method: accuracy against labeled images per class.
fn series(cells: &[Cell], methods: &[Method]) -> Vec<AccuracyCurve> {
    methods
        .iter()
        .enumerate()
        .map(|(i, m)| AccuracyCurve {
            name: m.name().into(),
            points: cells.iter().filter(|c| c.method == m.name()).map(|c| (c.per_class_actual, c.mean, c.std)).collect(),
            color: PALETTE[i % PALETTE.len()],
        })
        .collect()
}
