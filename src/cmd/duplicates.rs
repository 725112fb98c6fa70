//! `dino duplicates`: the near-duplicate pairs of a split (edited copies: crops, mirror images,
//! colour changes, JPEG re-compression) ranked by copy-detection similarity (`eval::copy_detection`:
//! multi-size GeM-pooled feature maps whitened on the split itself), most similar first, with the
//! groups that pairs sharing an image form; optionally as CSV `path_a,path_b,similarity`.

use super::eval_args::ModelArgs;
use super::flags::bool_flag;
use super::image_source::ImageSource;
use crate::eval::copy_detection::{prepare, CopyParams};
use crate::eval::copy_pairs::{groups, most_similar_pairs};
use crate::eval::features::Unreadable;
use crate::eval::outlier_report::{write_csv, DuplicatePair};
use crate::files::ShowPath;
use anyhow::{bail, Result};
use clap::Args;
use serde::Serialize;
use std::path::PathBuf;

/// Version of `dino duplicates --json`'s schema (docs/evaluation.md, "Copy detection").
pub const DUPLICATES_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Args)]
#[command(rename_all = "snake_case")]
pub struct DuplicatesArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Split to search for copies: train, val or pretext (default: train, or every image of a
    /// folder without train/)
    #[arg(long)]
    pub split: Option<String>,
    /// Pairs listed (and written to --csv), most similar first
    #[arg(long, default_value_t = 50)]
    pub top: usize,
    /// Also write the pairs here as CSV: path_a,path_b,similarity, most similar first
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Print one JSON object (schema in docs/evaluation.md) instead of the table
    #[arg(long)]
    pub json: bool,
    /// Square sizes in pixels each image is described at (default: the network's image size and
    /// 1.5 times it, at least 2 and 3 cells of its last feature map; raw pixels: their size)
    #[arg(long, num_args = 1..)]
    pub sizes: Vec<usize>,
    /// GeM pooling exponent of the feature maps (1: mean; larger: towards the maximum)
    #[arg(long, default_value_t = 4.0)]
    pub gem_p: f64,
    /// Whitened dimensions kept (0: all; at most half the split's images)
    #[arg(long, default_value_t = 0)]
    pub whitening_dims: usize,
    /// ViT: concatenate the CLS token to the pooled patch tokens (true/false)
    #[arg(long, default_value = "true", value_parser = bool_flag, action = clap::ArgAction::Set)]
    pub cls: bool,
    /// Add each image's mirror image's descriptor, so that a left-right flip changes nothing (true/false)
    #[arg(long, default_value = "true", value_parser = bool_flag, action = clap::ArgAction::Set)]
    pub mirror: bool,
    /// Standardise each image's intensities first, so that brightness and contrast changes
    /// change nothing (true/false)
    #[arg(long, default_value = "true", value_parser = bool_flag, action = clap::ArgAction::Set)]
    pub photometric: bool,
    /// Also describe regions of these sides (shares of the image's side, e.g. 0.6 0.75; 3 x 3
    /// places each), so that a crop can meet the region it was cut from (default: none)
    #[arg(long, num_args = 1..)]
    pub regions: Vec<f64>,
}

/// One listed pair: both paths as found under `--data_path`, the similarity, and the group.
#[derive(Debug, Clone, Serialize)]
pub struct PairRow {
    pub path_a: String,
    pub path_b: String,
    pub similarity: f32,
    pub group: usize,
}

/// `dino duplicates --json`.
#[derive(Debug, Clone, Serialize)]
pub struct DuplicatesReport {
    pub version: u32,
    pub weights: String,
    pub data_path: String,
    pub split: String,
    pub images: usize,
    pub sizes: Vec<usize>,
    pub gem_p: f64,
    pub whitening_dims: usize,
    pub regions: Vec<f64>,
    pub photometric: bool,
    pub pairs: Vec<PairRow>,
    /// The images of each group, by group id from 1 (a pair's `group`).
    pub groups: Vec<Vec<String>>,
    pub unreadable: Vec<Unreadable>,
}

fn check(a: &DuplicatesArgs) -> Result<()> {
    if a.top == 0 {
        bail!("--top must be at least 1");
    }
    if !(a.gem_p.is_finite() && a.gem_p > 0.0) {
        bail!("invalid value {} for --gem_p: expected a finite number > 0", a.gem_p);
    }
    if a.sizes.contains(&0) {
        bail!("--sizes: every size must be at least 1 pixel");
    }
    if let Some(r) = a.regions.iter().find(|r| !(**r > 0.0 && **r <= 1.0)) {
        bail!("invalid value {r} for --regions: expected shares of the side in (0, 1]");
    }
    if let Some(v) = a.split.as_deref().filter(|v| !["train", "val", "pretext"].contains(v)) {
        bail!("invalid --split {v}: use train, val or pretext");
    }
    Ok(())
}

pub fn run(a: &DuplicatesArgs) -> Result<i32> {
    check(a)?;
    let m = &a.model;
    let source = ImageSource::load(m)?;
    let split = source.split(a.split.as_deref())?;
    if split.len() < 2 {
        bail!("{} holds {} image(s): copy detection needs at least two", split.root.shown(), split.len());
    }
    let defaults = CopyParams::for_extractor(source.extractor(), source.crop());
    let params = CopyParams {
        sizes: if a.sizes.is_empty() { defaults.sizes } else { a.sizes.clone() },
        gem_p: a.gem_p,
        whitening_dims: a.whitening_dims,
        cls: a.cls,
        mirror: a.mirror,
        photometric: a.photometric,
        regions: a.regions.clone(),
    };
    let rows = source.copy_descriptors(m, split, &params)?;
    let (whole, regions) = prepare(&rows.features, params.whitening_dims);
    let pairs = most_similar_pairs(&whole, regions.as_ref(), a.top);
    let path = |r: usize| split.files[rows.kept[r]].display().to_string();
    let report = DuplicatesReport {
        version: DUPLICATES_SCHEMA_VERSION,
        weights: source.description(),
        data_path: source.layout().root().display().to_string(),
        split: split.name.clone(),
        images: rows.kept.len(),
        sizes: params.sizes.clone(),
        gem_p: params.gem_p,
        whitening_dims: params.whitening_dims,
        regions: params.regions.clone(),
        photometric: params.photometric,
        pairs: pairs.iter().map(|p| PairRow { path_a: path(p.a), path_b: path(p.b), similarity: p.similarity, group: p.group }).collect(),
        groups: groups(&pairs).into_iter().map(|g| g.into_iter().map(path).collect()).collect(),
        unreadable: rows.skipped,
    };
    if let Some(csv) = &a.csv {
        let rows: Vec<DuplicatePair> = report
            .pairs
            .iter()
            .map(|p| DuplicatePair { path_a: p.path_a.clone(), path_b: p.path_b.clone(), similarity: p.similarity })
            .collect();
        write_csv(csv, &rows)?;
        crate::say_err!("pairs: {}", csv.shown());
    }
    match a.json {
        true => crate::say!("{}", serde_json::to_string_pretty(&report)?),
        false => print_table(&report),
    }
    Ok(0)
}

fn print_table(r: &DuplicatesReport) {
    crate::say!(
        "{} most similar pairs of {} images of {} ({}) by copy-detection similarity, {}:",
        r.pairs.len(),
        r.images,
        r.split,
        r.data_path,
        r.weights
    );
    if !r.unreadable.is_empty() {
        crate::say!("{}", Unreadable::summary(&r.unreadable, 10));
    }
    crate::say!("{:>4}  {:>10}  {:>5}  path_a  path_b", "rank", "similarity", "group");
    for (i, p) in r.pairs.iter().enumerate() {
        crate::say!("{:>4}  {:>10.4}  {:>5}  {}  {}", i + 1, p.similarity, p.group, p.path_a, p.path_b);
    }
    let big: Vec<(usize, &Vec<String>)> = r.groups.iter().enumerate().filter(|(_, g)| g.len() > 2).collect();
    if !big.is_empty() {
        crate::say!("groups of more than two images:");
        for (i, g) in big {
            crate::say!("  group {}: {}", i + 1, g.join("  "));
        }
    }
}
