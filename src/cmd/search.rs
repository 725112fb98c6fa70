//! `dino search`: the images of a split most like a query image (or like each image of a folder
//! of queries) by cosine similarity of the network's features (the k-NN evaluation's, through
//! its feature cache), or of raw pixels. A query that is itself in the split is not its own
//! answer.

use super::eval_args::ModelArgs;
use super::image_source::{ImageSource, PIXELS};
use crate::eval::features::{l2_normalize, Unreadable};
use crate::eval::search::nearest_excluding;
use crate::files::ShowPath;
use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Version of `dino search --json`'s schema (docs/evaluation.md, "Image search").
pub const SEARCH_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Args)]
#[command(rename_all = "snake_case")]
pub struct SearchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The query: an image, or a folder of images (one list per image, at any depth)
    #[arg(long)]
    pub query: PathBuf,
    /// Split searched: train, val or pretext (default: train, or every image of a folder without
    /// train/)
    #[arg(long)]
    pub split: Option<String>,
    /// Images listed per query
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Print one JSON object (schema in docs/evaluation.md) instead of the tables
    #[arg(long)]
    pub json: bool,
}

/// One image found: its path as found under `--data_path`, its cosine similarity to the query
/// and its class folder (empty when unlabeled).
#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub path: String,
    pub similarity: f32,
    pub label: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueryResult {
    pub query: String,
    /// The query's class folder when the query folder has class folders, else empty.
    pub label: String,
    pub results: Vec<Hit>,
}

/// `dino search --json`.
#[derive(Debug, Clone, Serialize)]
pub struct SearchReport {
    pub version: u32,
    pub weights: String,
    pub data_path: String,
    pub split: String,
    pub top: usize,
    pub database_images: usize,
    pub queries: Vec<QueryResult>,
    /// Images (of the split or the queries) left out because they cannot be read.
    pub unreadable: Vec<Unreadable>,
}

/// The query files and their class folders: the one image, or every image under the folder.
fn query_files(query: &Path) -> Result<Vec<(PathBuf, String)>> {
    if !query.exists() {
        bail!("--query {} does not exist", query.shown());
    }
    if query.is_file() {
        return Ok(vec![(query.to_path_buf(), String::new())]);
    }
    let splits = crate::data::layout::every_image(query).with_context(|| format!("--query {}", query.shown()))?;
    let files: Vec<(PathBuf, String)> = splits
        .iter()
        .flat_map(|s| s.files.iter().zip(&s.labels).map(|(f, &l)| (f.clone(), s.classes.get(l).cloned().unwrap_or_default())))
        .collect();
    if files.is_empty() {
        bail!("--query {}: the folder holds no images", query.shown());
    }
    Ok(files)
}

pub fn run(a: &SearchArgs) -> Result<i32> {
    if a.top == 0 {
        bail!("--top must be at least 1");
    }
    let queries = query_files(&a.query)?;
    let m = &a.model;
    let source = ImageSource::load(m)?;
    let split = source.split(a.split.as_deref())?;
    if split.is_empty() {
        bail!("{} holds no images to search", split.root.shown());
    }
    let db = source.split_features(m, split)?;
    let files: Vec<PathBuf> = queries.iter().map(|q| q.0.clone()).collect();
    let q = source.files_features(m, &files)?;
    let (mut dbf, mut qf) = (db.features, q.features);
    if m.pretrained_weights.trim() == PIXELS {
        // Raw pixels share a large mean (the average image): centred, their cosine compares how
        // images differ from it, as the outlier scores' pixel baseline does.
        let mean = dbf.mean_dim(0, true, tch::Kind::Float);
        dbf = &dbf - &mean;
        qf = &qf - &mean;
    }
    let (dbn, qn) = (l2_normalize(&dbf), l2_normalize(&qf));
    // The query's own file is not an answer (a copy asked about is its original's match, not its own).
    let row_of: HashMap<PathBuf, usize> = db.kept.iter().enumerate().map(|(r, &i)| (canonical(&split.files[i]), r)).collect();
    let own: Vec<Option<usize>> = q.kept.iter().map(|&i| row_of.get(&canonical(&files[i])).copied()).collect();
    let found = nearest_excluding(&dbn, &qn, a.top, |r| own.get(r).copied().flatten());
    let label_of = |i: usize| split.classes.get(split.labels[i]).cloned().unwrap_or_default();
    let results = q
        .kept
        .iter()
        .zip(found)
        .map(|(&qi, hits)| QueryResult {
            query: queries[qi].0.display().to_string(),
            label: queries[qi].1.clone(),
            results: hits
                .into_iter()
                .map(|(r, similarity)| {
                    let i = db.kept[r];
                    Hit { path: split.files[i].display().to_string(), similarity, label: label_of(i) }
                })
                .collect(),
        })
        .collect();
    let report = SearchReport {
        version: SEARCH_SCHEMA_VERSION,
        weights: source.description(),
        data_path: source.layout().root().display().to_string(),
        split: split.name.clone(),
        top: a.top,
        database_images: db.kept.len(),
        queries: results,
        unreadable: db.skipped.into_iter().chain(q.skipped).collect(),
    };
    match a.json {
        true => crate::say!("{}", serde_json::to_string_pretty(&report)?),
        false => print_tables(&report),
    }
    Ok(0)
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn print_tables(r: &SearchReport) {
    crate::say!("{} nearest of {} images of {} ({}) by cosine similarity, {}:", r.top, r.database_images, r.split, r.data_path, r.weights);
    if !r.unreadable.is_empty() {
        crate::say!("{}", Unreadable::summary(&r.unreadable, 10));
    }
    for q in &r.queries {
        let label = if q.label.is_empty() { String::new() } else { format!(" ({})", q.label) };
        crate::say!("\nquery {}{label}", q.query);
        crate::say!("{:>4}  {:>10}  {:<12} path", "rank", "similarity", "label");
        for (i, h) in q.results.iter().enumerate() {
            crate::say!("{:>4}  {:>10.4}  {:<12} {}", i + 1, h.similarity, h.label, h.path);
        }
    }
}
