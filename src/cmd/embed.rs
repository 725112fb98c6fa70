//! `dino embed`: the features of every image of a folder (any layout: the project's
//! `pretext/` + `train/` + `val/`, an ImageFolder root, or unlabeled images at any depth) to
//! `.npy` (float32 [N, D]) or `.safetensors` (`features`), with a CSV of `path,label` beside it in
//! the same row order, for analysis elsewhere. The extraction and the cache are the evaluations'
//! (`eval::features`), so the rows equal the features a k-NN evaluation of the same weights uses
//! (before its L2 normalisation).

use super::eval_args::ModelArgs;
use super::progress::Progress;
use crate::config::validate::resolve_device;
use crate::eval::features::{extract_split, ExtractOptions, FeatureCache, FeatureKind};
use crate::eval::source;
use crate::files::ShowPath;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Args)]
#[command(rename_all = "snake_case")]
pub struct EmbedArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Where the features go: FILE.npy (float32, one row per image) or FILE.safetensors
    /// (tensor `features`); FILE.csv next to it lists path,label in the same order
    #[arg(long, default_value = "embeddings.npy")]
    pub output: PathBuf,
}

/// One CSV row per image: its path and its class folder (empty when unlabeled).
fn csv_text(rows: &[(String, String)]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(vec![]);
    w.write_record(["path", "label"])?;
    for (p, l) in rows {
        w.write_record([p, l])?;
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("cannot write the CSV: {e}"))
}

fn write_features(path: &Path, features: &Tensor) -> Result<()> {
    let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
    match ext.as_deref() {
        Some("npy") => {
            let (rows, cols) = features.size2()?;
            let data = Vec::<f32>::try_from(features.to_kind(Kind::Float).contiguous().flatten(0, -1))?;
            crate::interop::npy::write_f32(path, rows as usize, cols as usize, &data)?;
        }
        Some("safetensors") => {
            let features = features.to_kind(Kind::Float).contiguous();
            crate::files::write_output_via(path, |tmp| -> Result<()> { Ok(Tensor::write_safetensors(&[("features", &features)], tmp)?) })
                .with_context(|| format!("cannot write {}", path.shown()))?;
        }
        _ => bail!("--output {}: give a file ending in .npy or .safetensors", path.shown()),
    }
    Ok(())
}

pub fn run(a: &EmbedArgs) -> Result<i32> {
    let m = &a.model;
    let device = resolve_device(&m.device)?;
    let source = source::load(&m.spec(device))?;
    crate::say_err!("embedding with {}", source.description);
    for note in &source.notes {
        crate::say_err!("  note: {note}");
    }
    let root = m.data_path.clone().unwrap_or_else(|| source.config.run.data_path.clone());
    let splits = crate::data::layout::every_image(&root).with_context(|| "set --data_path to a folder of images")?;
    let cache = if m.no_cache { None } else { FeatureCache::for_run_or_user(source.run_dir.as_deref()) };
    let opts = ExtractOptions::new(
        source.config.crops.global_crop_size,
        m.batch_size_per_gpu.max(1) as usize,
        m.num_workers,
        device,
        FeatureKind::Cls,
    );
    let (mut parts, mut rows) = (vec![], vec![]);
    for split in &splits {
        let bar = Progress::new(format!("features {}", split.name));
        let keyed = cache.as_ref().map(|c| (c, source.identity.as_str()));
        let f = extract_split(&source.backbone, split, &opts, keyed, &mut |d, t| bar.update(d, t))?;
        if f.from_cache {
            crate::say_err!("features {}: {} images from the cache", split.name, f.len());
        }
        if !f.skipped.is_empty() {
            crate::say_err!("warning: {}: {}", split.name, crate::eval::features::Unreadable::summary(&f.skipped, 5));
        }
        // One row per embedded image: the unreadable ones have none.
        rows.extend(f.kept.iter().map(|&i| {
            let label = split.classes.get(split.labels[i]).cloned().unwrap_or_default();
            (split.files[i].display().to_string(), label)
        }));
        parts.push(f.features);
    }
    let features = Tensor::cat(&parts, 0);
    if let Some(dir) = a.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.shown()))?;
    }
    write_features(&a.output, &features)?;
    let width = features.size().get(1).copied().unwrap_or(0);
    // The row list goes beside a file, never beside a device (`--output /dev/stdout`: not in /dev).
    let Ok(crate::files::Target::Replace(file)) = crate::files::Target::of(&a.output) else {
        crate::say_err!("{}: {} images x {width} features (no row list: the output is not a file)", a.output.shown(), rows.len());
        return Ok(0);
    };
    let csv = file.with_extension("csv");
    crate::run::dir::write_atomic(&csv, &csv_text(&rows)?)?;
    crate::say!("{}: {} images x {width} features (rows in the order of {})", a.output.shown(), rows.len(), csv.shown());
    Ok(0)
}
