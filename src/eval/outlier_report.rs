//! `dino outliers`: scores every image of a split, maps the features to 2-D, and writes what a
//! person needs to review the data: a CSV sorted by the chosen score, the near-duplicate pairs,
//! and a picture of the map coloured by class with the top outliers ringed. The trainer's `o`
//! (Outliers tab) runs the same `score_split` on the live teacher.
//!
//! Scores (docs/outliers.md says when each is the right one): `mislabel` (confident learning on
//! out-of-fold probe probabilities), `stranger` (k-th nearest-neighbour distance to a reference
//! set), `disagreement` (vote margin), `isolation`, and `auto`, which combines the first two.

use super::confident::{confident_joint, out_of_fold_probs, self_confidence, ProbeParams};
use super::copy_detection::{descriptors, prepare, CopyParams, Extractor};
use super::copy_pairs::most_similar_pairs;
use super::evidence::{cross_validated_knn, likely_class, FeatureEvidence};
use super::features::{extract_split, l2_normalize, ExtractOptions, FeatureCache, Unreadable};
use super::figure::{draw_error, font, Figure};
use super::outlier_row::{auto_scores, compare, percentiles};
use super::outliers::{kth_distance, score};
use super::source::ModelSource;
use super::umap::{umap, UmapParams};
use super::EvalError;
use crate::data::Split;
use crate::files::ShowPath;
use crate::model::Backbone;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

pub use super::outlier_row::{OutlierRow, ScoreKind};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DuplicatePair {
    pub path_a: String,
    pub path_b: String,
    pub similarity: f32,
}

/// `dino outliers` defaults the live scoring uses too.
pub const OUTLIER_K: usize = 10;
pub const OUTLIER_TOP: usize = 50;
/// Copy-detection similarity (`copy_duplicates`) from which two images are listed as duplicates:
/// on the planted set of docs/evaluation.md every pair at or above it was a planted copy, for the
/// `cifar-quick` teacher and random weights alike (the closest other pairs: 0.40).
pub const DUPLICATE_THRESHOLD: f32 = 0.45;

#[derive(Debug, Clone)]
pub struct OutlierParams {
    pub k: usize,
    pub temperature: f64,
    pub duplicate_threshold: f32,
    pub score: ScoreKind,
    pub seed: u64,
    /// Out-of-fold probe of the mislabel score (K folds, seeded by `seed`).
    pub folds: usize,
}

impl OutlierParams {
    /// The defaults of `dino outliers` with the given score and seed.
    pub fn new(score: ScoreKind, seed: u64) -> Self {
        Self { k: OUTLIER_K, temperature: 0.07, duplicate_threshold: DUPLICATE_THRESHOLD, score, seed, folds: 5 }
    }
}

/// The set the stranger score measures distances to: normalised features and their files.
pub struct Reference<'a> {
    pub name: &'a str,
    pub normed: &'a Tensor,
    pub files: &'a [PathBuf],
}

/// Rows sorted by the chosen score (highest first) and the duplicate pairs.
#[derive(Debug, Clone)]
pub struct OutlierReport {
    pub split: String,
    pub score: ScoreKind,
    pub rows: Vec<OutlierRow>,
    pub duplicates: Vec<DuplicatePair>,
    /// Images of the split left out because they cannot be read.
    pub skipped: Vec<Unreadable>,
    /// Which set the stranger score measured against.
    pub reference: String,
    /// Confident joint `[given][likely]` (labeled splits), in `classes` order.
    pub confident_joint: Option<Vec<Vec<usize>>>,
    pub classes: Vec<String>,
    /// How good the features are (labeled splits): what decides whether any row is called a
    /// likely label error (`evidence::FeatureEvidence::supports_claims`).
    pub evidence: Option<FeatureEvidence>,
}

impl OutlierReport {
    /// Images the report calls likely label errors (`evidence::likely_class`): none unless the
    /// evidence supports the claim.
    pub fn likely_label_errors(&self) -> usize {
        self.rows.iter().filter(|r| !r.suggested.is_empty()).count()
    }

    /// Whether the report calls any image a likely label error at all.
    pub fn claims_label_errors(&self) -> bool {
        self.evidence.as_ref().is_some_and(FeatureEvidence::supports_claims)
    }
}

fn relative(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).to_string_lossy().into_owned()
}

/// Features of `split` through `backbone` (and of the reference split, when one other than the
/// split itself is given), then every score and the map. Unreadable images are skipped and named.
/// `baseline`, the same network with random weights, is what the features are measured against
/// on a labeled split (`FeatureEvidence`); without it no image is called a likely label error
/// unless the features separate the classes.
#[allow(clippy::too_many_arguments)]
pub fn score_split(
    backbone: &Backbone,
    baseline: Option<&ModelSource>,
    split: &Split,
    reference: Option<&Split>,
    data_root: &Path,
    opts: &ExtractOptions,
    cache: Option<(&FeatureCache, &str)>,
    p: &OutlierParams,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<OutlierReport, EvalError> {
    if split.is_empty() {
        return Err(EvalError::Invalid(format!("{} holds no images to score", split.root.shown())));
    }
    let baseline = baseline.filter(|_| split.is_labeled());
    let before = split.len() + reference.map_or(0, Split::len);
    let with_baseline = before + baseline.map_or(0, |_| split.len());
    // The copy-detection pass over the split comes last.
    let total = with_baseline + split.len();
    let f = extract_split(backbone, split, opts, cache, &mut |d, _| progress(d, total))?;
    let scored = split.subset(&f.kept);
    let normed = l2_normalize(&f.features);
    let random = match baseline {
        // The images the features kept, so that the rows line up.
        Some(b) => {
            let bc = cache.map(|(c, _)| (c, b.identity.as_str()));
            let bf = extract_split(&b.backbone, &scored, opts, bc, &mut |d, _| progress(before + d, total))?;
            (bf.kept.len() == scored.len()).then(|| l2_normalize(&bf.features))
        }
        None => None,
    };
    let mut report = match reference {
        Some(r) => {
            let rf = extract_split(backbone, r, opts, cache, &mut |d, _| progress(split.len() + d, total))?;
            let files = r.subset(&rf.kept).files;
            let rn = l2_normalize(&rf.features);
            let reference = Reference { name: &r.name, normed: &rn, files: &files };
            report_from_features(&normed, random.as_ref(), &scored, data_root, Some(&reference), p)?
        }
        None => report_from_features(&normed, random.as_ref(), &scored, data_root, None, p)?,
    };
    report.skipped = f.skipped;
    let params = CopyParams::for_network(opts.transform.crop, backbone.feature_stride());
    let how = (opts.device, opts.batch_size, opts.num_workers);
    let (copies, kept, _) =
        descriptors(Extractor::Network(backbone), &scored.files, &params, how, &mut |d, _| progress(with_baseline + d, total))?;
    let rel: Vec<String> = kept.iter().map(|&i| relative(data_root, &scored.files[i])).collect();
    report.duplicates = copy_duplicates(&copies, &rel, p.duplicate_threshold);
    Ok(report)
}

/// Pairs of images whose copy-detection similarity (`copy_detection`: `descriptors` whitened on
/// these images themselves, `copy_pairs`) is at least `threshold`, most similar first; `rel` names each row.
/// At most one pair per image is listed on average (a group of many identical images shows its
/// most similar pairs).
pub fn copy_duplicates(descriptors: &Tensor, rel: &[String], threshold: f32) -> Vec<DuplicatePair> {
    let (whole, regions) = prepare(descriptors, 0);
    most_similar_pairs(&whole, regions.as_ref(), rel.len())
        .into_iter()
        .filter(|c| c.similarity >= threshold)
        .map(|c| DuplicatePair { path_a: rel[c.a].clone(), path_b: rel[c.b].clone(), similarity: c.similarity })
        .collect()
}

/// Every score of already-normalised features (rows in `split` order), the map and the order
/// (no duplicates: those come from the images, see `copy_duplicates`); `random`, the same rows
/// through the same network with random weights (normalised), is the baseline of the evidence.
pub fn report_from_features(
    normed: &Tensor,
    random: Option<&Tensor>,
    split: &Split,
    data_root: &Path,
    reference: Option<&Reference>,
    p: &OutlierParams,
) -> Result<OutlierReport, EvalError> {
    let labels = split.is_labeled().then_some((split.labels.as_slice(), split.classes.len()));
    let s = score(normed, labels, p.k, p.temperature);
    let stranger = stranger_scores(normed, split, reference, p.k);
    let evidence = labels.map(|(l, c)| {
        let knn = |x: &Tensor| cross_validated_knn(x, l, c, p.k, p.temperature, p.folds, p.seed);
        FeatureEvidence {
            knn: knn(normed),
            random: random.map(knn),
            chance: 100.0 / c.max(1) as f64,
            images: l.len(),
            folds: p.folds,
            k: p.k,
        }
    });
    let supports = evidence.as_ref().is_some_and(FeatureEvidence::supports_claims);
    let probe = ProbeParams { folds: p.folds, seed: p.seed, ..ProbeParams::default() };
    let (mislabel, joint) = match labels {
        Some((l, c)) => {
            let probs = out_of_fold_probs(normed, l, c, &probe)?;
            (Some(self_confidence(&probs, l)), Some(confident_joint(&probs, l, c)))
        }
        None => (None, None),
    };
    let u_s = percentiles(&stranger, &s.isolation);
    // The mislabel side of auto ranks by the vote margin, ties broken by confident learning: on
    // the planted cifar-vehicles set (docs/outliers.md) the margin found 4-8x more misfiled
    // images in the top 40 than self-confidence, whose probe is only as good as weak features.
    let u_m = mislabel.as_ref().zip(s.disagreement.as_ref()).map(|(m, d)| percentiles(d, m));
    let auto = auto_scores(u_m.as_deref(), &u_s);
    let map = umap(normed, &UmapParams { seed: p.seed, ..Default::default() });
    let rel: Vec<String> = split.files.iter().map(|f| relative(data_root, f)).collect();
    let class = |i: usize| split.classes.get(i).cloned().unwrap_or_default();
    let likely = |i: usize| match (&s.predicted, &s.disagreement) {
        (Some(pr), Some(d)) => likely_class(supports, split.labels[i], pr[i], d[i], joint.as_ref().and_then(|j| j.suggested[i])),
        _ => None,
    };
    let mut rows: Vec<OutlierRow> = (0..split.len())
        .map(|i| OutlierRow {
            path: rel[i].clone(),
            split: split.name.clone(),
            label: if split.is_labeled() { class(split.labels[i]) } else { String::new() },
            auto: Some(auto[i].0),
            kind: auto[i].1.to_string(),
            mislabel: mislabel.as_ref().map(|m| m[i]),
            stranger: Some(stranger[i]),
            isolation: s.isolation[i],
            disagreement: s.disagreement.as_ref().map(|d| d[i]),
            predicted: s.predicted.as_ref().map(|pr| class(pr[i])).unwrap_or_default(),
            suggested: likely(i).map(class).unwrap_or_default(),
            neighbours: s.neighbours.index[i].iter().map(|&j| rel[j].as_str()).collect::<Vec<_>>().join(";"),
            umap_x: map.get(i).map(|m| m[0]).unwrap_or(0.0),
            umap_y: map.get(i).map(|m| m[1]).unwrap_or(0.0),
        })
        .collect();
    let score = if split.is_labeled() || !p.score.needs_labels() { p.score } else { ScoreKind::Auto };
    rows.sort_by(|a, b| compare(score, a, b));
    Ok(OutlierReport {
        split: split.name.clone(),
        score,
        rows,
        // Copy detection needs the images, not these features: `score_split` adds them.
        duplicates: Vec::new(),
        skipped: Vec::new(),
        reference: reference.map_or_else(|| split.name.clone(), |r| r.name.to_string()),
        confident_joint: joint.map(|j| j.counts),
        classes: split.classes.clone(),
        evidence,
    })
}

/// k-th nearest-neighbour distance of every image to the reference set (the split itself when
/// none is given); an image that is also in the reference is not its own neighbour.
fn stranger_scores(normed: &Tensor, split: &Split, reference: Option<&Reference>, k: usize) -> Vec<f64> {
    match reference {
        None => kth_distance(normed, normed, k, &(0..split.len()).map(Some).collect::<Vec<_>>()),
        Some(r) => {
            let at: HashMap<&Path, usize> = r.files.iter().enumerate().map(|(i, f)| (f.as_path(), i)).collect();
            let same: Vec<Option<usize>> = split.files.iter().map(|f| at.get(f.as_path()).copied()).collect();
            kth_distance(normed, r.normed, k, &same)
        }
    }
}

fn csv_error(path: &Path, e: impl ToString) -> EvalError {
    EvalError::io(path, e)
}

pub fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), EvalError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| EvalError::io(dir, e))?;
    }
    // Whole or not at all for a file; a device or a link in its place is written through.
    let mut out = crate::files::Output::create(path).map_err(|e| csv_error(path, e))?;
    let mut w = csv::Writer::from_writer(&mut out.file);
    for r in rows {
        w.serialize(r).map_err(|e| csv_error(path, e))?;
    }
    w.flush().map_err(|e| csv_error(path, e))?;
    drop(w);
    out.commit().map_err(|e| EvalError::io(path, e))
}

/// The duplicates CSV, with its header even when no pair was found: a reader (or a person)
/// sees the columns, not an empty file that could be a failed write.
fn write_pairs(path: &Path, pairs: &[DuplicatePair]) -> Result<(), EvalError> {
    if !pairs.is_empty() {
        return write_csv(path, pairs);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| EvalError::io(dir, e))?;
    }
    crate::files::write_output(path, b"path_a,path_b,similarity\n").map_err(|e| EvalError::io(path, e))
}

pub fn read_rows(path: &Path) -> Result<Vec<OutlierRow>, EvalError> {
    let mut r = csv::Reader::from_reader(crate::files::open_regular(path).map_err(|e| csv_error(path, e))?);
    r.deserialize().collect::<Result<Vec<OutlierRow>, _>>().map_err(|e| csv_error(path, e))
}

/// Colours of classes on the map (Tableau 10), then grey for unlabeled images.
pub const CLASS_COLOURS: [[u8; 3]; 10] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
    [188, 189, 34],
    [23, 190, 207],
];

/// The 2-D map of a report: one dot per image coloured by class, the `top` highest-scored images
/// ringed in black, the classes named in their colours.
pub struct EmbeddingMap<'a> {
    pub rows: &'a [OutlierRow],
    pub top: usize,
}

impl Figure for EmbeddingMap<'_> {
    fn size(&self) -> (u32, u32) {
        (800, 800)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(draw_error)?;
        let mut classes: Vec<&str> = self.rows.iter().map(|r| r.label.as_str()).collect();
        classes.sort_unstable();
        classes.dedup();
        let colour = |label: &str| {
            let [r, g, b] = classes.iter().position(|c| *c == label).map(|i| CLASS_COLOURS[i % 10]).unwrap_or([127, 127, 127]);
            RGBColor(r, g, b)
        };
        // A square view around the points, so distances read the same in both directions.
        let [x0, x1, y0, y1] = map_bounds(self.rows);
        let (cx, cy) = if self.rows.is_empty() { (0.0, 0.0) } else { ((x0 + x1) / 2.0, (y0 + y1) / 2.0) };
        let half = if self.rows.is_empty() { 1.0 } else { ((x1 - x0).max(y1 - y0) / 2.0).max(1e-6) * 1.03 };
        let mut chart =
            ChartBuilder::on(root).margin(20).build_cartesian_2d(cx - half..cx + half, cy - half..cy + half).map_err(draw_error)?;
        let dots = self.rows.iter().map(|r| Circle::new((r.umap_x, r.umap_y), 2, colour(&r.label).filled()));
        chart.draw_series(dots).map_err(draw_error)?;
        // Rows arrive sorted by score: the first `top` are the ones to ring.
        let rings = self.rows.iter().take(self.top).map(|r| Circle::new((r.umap_x, r.umap_y), 6, BLACK.stroke_width(2)));
        chart.draw_series(rings).map_err(draw_error)?;
        for (i, c) in classes.iter().enumerate().filter(|(_, c)| !c.is_empty()) {
            let style = font(14).color(&colour(c));
            root.draw(&Text::new(c.to_string(), (10, 10 + 18 * i as i32), style)).map_err(draw_error)?;
        }
        Ok(())
    }
}

/// The map as PNG (or SVG when the name ends in `.svg`).
pub fn write_map(path: &Path, rows: &[OutlierRow], top: usize) -> Result<(), EvalError> {
    super::figure::write(path, &EmbeddingMap { rows, top })
}

/// `[x_min, x_max, y_min, y_max]` of the rows' map coordinates (infinite when there are none).
pub fn map_bounds(rows: &[OutlierRow]) -> [f32; 4] {
    rows.iter().fold([f32::INFINITY, f32::NEG_INFINITY, f32::INFINITY, f32::NEG_INFINITY], |[x0, x1, y0, y1], r| {
        [x0.min(r.umap_x), x1.max(r.umap_x), y0.min(r.umap_y), y1.max(r.umap_y)]
    })
}

/// Where a report goes in a run directory, by label: `evals/outliers-LABEL{.csv,-duplicates.csv,-map.png}`.
pub fn run_files(run_dir: &Path, label: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = run_dir.join(super::record::EVALS_DIR);
    (
        dir.join(format!("outliers-{label}.csv")),
        dir.join(format!("outliers-{label}-duplicates.csv")),
        dir.join(format!("outliers-{label}-map.png")),
    )
}

/// Writes the CSV, the duplicates CSV and the map (each side file when it has a place: none
/// beside a device); returns the JSON record of the report.
pub fn write_report(
    report: &OutlierReport,
    csv: &Path,
    dups: Option<&Path>,
    map: Option<&Path>,
    top: usize,
) -> Result<serde_json::Value, EvalError> {
    write_csv(csv, &report.rows)?;
    if let Some(dups) = dups {
        write_pairs(dups, &report.duplicates)?;
    }
    if let Some(map) = map {
        write_map(map, &report.rows, top)?;
    }
    Ok(serde_json::json!({
        "kind": "outliers",
        "split": report.split,
        "score": report.score.name(),
        "num_images": report.rows.len(),
        "num_duplicates": report.duplicates.len(),
        "reference": report.reference,
        "likely_label_errors": report.likely_label_errors(),
        "label_error_claim": report.claims_label_errors(),
        "feature_evidence": report.evidence,
        "evidence": report.evidence.as_ref().map(FeatureEvidence::line),
        "confident_joint": report.confident_joint,
        "classes": report.classes,
        "unreadable": report.skipped.len(),
        "unreadable_files": Unreadable::json(&report.skipped),
        "top": report.rows.iter().take(5).map(|r| serde_json::json!({"path": r.path, "score": r.score(report.score)})).collect::<Vec<_>>(),
        // Lossy: a path need not be UTF-8, and JSON holds only text.
        "csv": csv.to_string_lossy(),
        "duplicates_csv": dups.map(Path::to_string_lossy),
        "map": map.map(Path::to_string_lossy),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    fn split(labels: Vec<usize>) -> Split {
        let n = labels.len();
        Split {
            name: "train".into(),
            root: "/data/train".into(),
            files: (0..n).map(|i| PathBuf::from(format!("/data/train/c{}/img{i}.png", labels[i]))).collect(),
            labels,
            classes: vec!["cat".into(), "dog".into()],
        }
    }

    fn params() -> OutlierParams {
        OutlierParams { k: 3, duplicate_threshold: 0.999, folds: 2, ..OutlierParams::new(ScoreKind::Disagreement, 0) }
    }

    /// Two tight clusters on the unit circle; image 2 sits in cluster 0 with label 1; images 5 and
    /// 6 are the same vector.
    fn features() -> Tensor {
        let deg = [0.0f64, 4.0, 8.0, 12.0, 90.0, 94.0, 94.0, 98.0];
        let v: Vec<f32> = deg.iter().flat_map(|d| [d.to_radians().cos() as f32, d.to_radians().sin() as f32]).collect();
        Tensor::from_slice(&v).reshape([8, 2]).to_kind(Kind::Float).to_device(Device::Cpu)
    }

    #[test]
    fn report_rows_are_sorted_by_score_and_name_neighbours_and_duplicates() {
        let s = split(vec![0, 0, 1, 0, 1, 1, 1, 1]);
        let r = report_from_features(&features(), None, &s, Path::new("/data"), None, &params()).unwrap();
        assert_eq!(r.rows[0].path, "train/c1/img2.png", "the mislabeled image first");
        assert_eq!(r.rows[0].label, "dog");
        assert_eq!(r.rows[0].predicted, "cat");
        assert_eq!(r.rows[0].neighbour_paths().count(), 3);
        assert!(r.rows.windows(2).all(|w| w[0].score(ScoreKind::Disagreement) >= w[1].score(ScoreKind::Disagreement)));
        assert!(r.duplicates.is_empty(), "duplicates come from the images (score_split)");
    }

    #[test]
    fn copy_duplicates_are_the_pairs_above_the_threshold_most_similar_first() {
        // 40 random images in 8-D, the first three with a near copy each and one exact copy.
        // Deterministic pseudo-random rows (the global torch generator is shared with the tests
        // running beside this one): 40 directions in 32 dimensions, far from each other.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        };
        let values: Vec<f32> = (0..43 * 32).map(|_| next()).collect();
        let base = Tensor::from_slice(&values[..40 * 32]).reshape([40, 32]);
        let noise = Tensor::from_slice(&values[40 * 32..]).reshape([3, 32]);
        let near = base.narrow(0, 0, 3) + noise * 0.05;
        let x = Tensor::cat(&[&base, &near, &base.narrow(0, 5, 1)], 0);
        let rel: Vec<String> = (0..44).map(|i| format!("img{i}.png")).collect();
        let d = copy_duplicates(&x, &rel, 0.9);
        let pairs: Vec<(&str, &str)> = d.iter().map(|p| (p.path_a.as_str(), p.path_b.as_str())).collect();
        assert_eq!(pairs[0], ("img5.png", "img43.png"), "the exact copy first: {d:?}");
        assert!((d[0].similarity - 1.0).abs() < 1e-4);
        let mut rest = pairs[1..].to_vec();
        rest.sort_unstable();
        assert_eq!(rest, vec![("img0.png", "img40.png"), ("img1.png", "img41.png"), ("img2.png", "img42.png")], "{d:?}");
        assert!(d.windows(2).all(|w| w[0].similarity >= w[1].similarity));
        assert!(copy_duplicates(&x, &rel, 1.01).is_empty());
    }

    #[test]
    fn csv_has_the_documented_columns_and_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let s = split(vec![0, 0, 1, 0, 1, 1, 1, 1]);
        let r = report_from_features(&features(), None, &s, Path::new("/data"), None, &params()).unwrap();
        let (csv, dups, map) = run_files(d.path(), "ep0001-it00000010");
        let json = write_report(&r, &csv, Some(&dups), Some(&map), 2).unwrap();
        assert_eq!(json["num_images"], 8);
        let text = std::fs::read_to_string(&csv).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            "path,split,label,auto,kind,mislabel,stranger,isolation,disagreement,predicted,suggested,neighbours,umap_x,umap_y"
        );
        assert_eq!(read_rows(&csv).unwrap(), r.rows);
        // A report written before the mislabel, stranger and auto columns still loads.
        let old = d.path().join("old.csv");
        std::fs::write(
            &old,
            "path,split,label,isolation,disagreement,predicted,neighbours,umap_x,umap_y\na.png,train,cat,0.5,1.0,dog,b.png,0.1,0.2\n",
        )
        .unwrap();
        let rows = read_rows(&old).unwrap();
        assert_eq!((rows[0].auto, rows[0].score(ScoreKind::Auto)), (None, 1.0));
        assert!(std::fs::read_to_string(&dups).unwrap().starts_with("path_a,path_b,similarity"));
        let img = image::open(&map).unwrap();
        assert_eq!((img.width(), img.height()), (800, 800));
        let svg = d.path().join("map.svg");
        write_map(&svg, &r.rows, 2).unwrap();
        assert!(std::fs::read_to_string(&svg).unwrap().contains("<circle"));
    }

    #[test]
    fn unlabeled_splits_rank_by_isolation_with_empty_label_columns() {
        let mut s = split(vec![0; 8]);
        s.classes.clear();
        s.name = "pretext".into();
        let r = report_from_features(&features(), None, &s, Path::new("/data"), None, &params()).unwrap();
        assert_eq!(r.score, ScoreKind::Auto, "disagreement needs labels: the stranger score ranks");
        assert!(r.rows.iter().all(|row| row.label.is_empty() && row.disagreement.is_none() && row.mislabel.is_none()));
        assert!(r.rows.iter().all(|row| row.kind == "stranger" && row.predicted.is_empty()));
        assert!(r.rows.windows(2).all(|w| w[0].stranger >= w[1].stranger));
    }

    /// No two of the top 100 rows of any score tie unless their features are equal: 300 random
    /// features in 2 classes, 10 of them duplicated (the only ties allowed). A tie is equal
    /// values of both the score and its tie-breaker (two images can be each other's k-th
    /// neighbour and share a stranger score; their isolation then orders them).
    #[test]
    fn no_two_of_the_top_100_of_any_score_tie_unless_their_features_are_equal() {
        tch::manual_seed(7);
        let base = Tensor::randn([290, 16], (Kind::Float, Device::Cpu));
        let x = crate::eval::features::l2_normalize(&Tensor::cat(&[&base, &base.narrow(0, 0, 10)], 0));
        let mut s = split((0..300).map(|i| i % 2).collect());
        s.files = (0..300).map(|i| PathBuf::from(format!("/data/train/c/img{i:03}.png"))).collect();
        let p = OutlierParams { k: 10, ..OutlierParams::new(ScoreKind::Auto, 0) };
        let r = report_from_features(&x, None, &s, Path::new("/data"), None, &p).unwrap();
        let twin = |a: &str, b: &str| {
            let n = |p: &str| p.trim_start_matches("train/c/img").trim_end_matches(".png").parse::<usize>().unwrap() % 290;
            n(a) == n(b)
        };
        for kind in ScoreKind::ALL {
            let mut rows = r.rows.clone();
            rows.sort_by(|a, b| compare(kind, a, b));
            for (i, a) in rows.iter().take(100).enumerate() {
                for b in rows.iter().take(100).skip(i + 1) {
                    let key = |r: &OutlierRow| (r.score(kind), r.score(kind.tie_breaker()));
                    assert!(key(a) != key(b) || twin(&a.path, &b.path), "{}: {} and {} tie at {:?}", kind.name(), a.path, b.path, key(a));
                }
            }
        }
    }
}
