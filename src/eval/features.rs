//! Frozen features of a labeled split: the evaluation transform (the reference's Resize 256 /
//! CenterCrop 224, scaled to the model's crop size), batched forward passes on CPU or CUDA with a
//! progress callback, and an on-disk cache keyed by (weights identity, split, transform, kind) so a
//! second evaluation of the same checkpoint is instant and a changed checkpoint is never served stale.
//!
//! An image that cannot be decoded is skipped, counted and named (`LabeledFeatures::skipped`):
//! one bad file among a hundred thousand must not stop an evaluation. Optional test-time
//! augmentation averages the normalised features of a few views (whole image, centre crop,
//! closer crop, each also flipped) for features too weak to be stable under a small shift.

use super::EvalError;
use crate::data::{eval_transform, load_rgb, Split};
use crate::files::ShowPath;
use crate::model::Backbone;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Resize-then-centre-crop sizes of the evaluation view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalTransform {
    pub resize: usize,
    pub crop: usize,
}

impl EvalTransform {
    /// The reference's 256/224 ratio at the model's crop size (224 -> 256, 32 -> 36), truncated
    /// like the integer sizes torchvision is given.
    pub fn for_crop(crop: usize) -> Self {
        Self { resize: crop * 256 / 224, crop }
    }
}

/// Which vector represents an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureKind {
    /// The backbone's output: normalised CLS token (ViT) or pooled features (ResNet). k-NN uses it.
    Cls,
    /// The linear probe's input: CLS tokens of the last `n` blocks, concatenated, plus the
    /// average-pooled patch tokens of the last block when `avgpool`. ResNets give pooled features.
    LastBlocks { n: usize, avgpool: bool },
}

impl FeatureKind {
    pub(crate) fn tag(self) -> String {
        match self {
            Self::Cls => "cls".into(),
            Self::LastBlocks { n, avgpool } => format!("last{n}{}", if avgpool { "-avgpool" } else { "" }),
        }
    }
}

/// The features of one backbone forward pass of a batch.
pub fn forward_features(backbone: &Backbone, x: &Tensor, kind: FeatureKind) -> Tensor {
    match (backbone, kind) {
        (Backbone::Vit(v), FeatureKind::LastBlocks { n, avgpool }) => {
            let layers = v.intermediate_layers(x, n.max(1));
            let mut parts: Vec<Tensor> = layers.iter().map(|t| t.select(1, 0)).collect();
            if avgpool {
                if let Some(last) = layers.last() {
                    let patches = last.size()[1] - 1;
                    parts.push(last.narrow(1, 1, patches).mean_dim(1, false, Kind::Float));
                }
            }
            Tensor::cat(&parts, -1)
        }
        _ => backbone.forward_t(x, false),
    }
}

#[derive(Debug, Clone)]
pub struct ExtractOptions {
    pub transform: EvalTransform,
    pub batch_size: usize,
    /// Decoding threads (at least one).
    pub num_workers: usize,
    pub device: Device,
    pub kind: FeatureKind,
    /// Test-time augmentation: average the features of `TTA_VIEWS` views of each image.
    pub tta: bool,
}

/// Views of an image test-time augmentation averages: resize before the centre crop as a share
/// of the plain view's resize (1: the evaluation view), each also flipped left to right.
pub const TTA_SCALES: [f64; 3] = [1.0, 0.875, 1.15];

impl ExtractOptions {
    /// Centre crops of `crop` pixels in batches of `batch_size`, decoded by `num_workers` threads
    /// (each at least one).
    pub fn new(crop: usize, batch_size: usize, num_workers: usize, device: Device, kind: FeatureKind) -> Self {
        Self {
            transform: EvalTransform::for_crop(crop.max(1)),
            batch_size: batch_size.max(1),
            num_workers: num_workers.max(1),
            device,
            kind,
            tta: false,
        }
    }

    fn tag(&self) -> String {
        format!("{}{}", self.kind.tag(), if self.tta { "-tta" } else { "" })
    }
}

/// An image left out of an evaluation because it cannot be read or decoded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unreadable {
    pub path: PathBuf,
    pub reason: String,
}

impl Unreadable {
    /// `N unreadable image(s) skipped: a.jpg (why), ...` with at most `max` named, for logs.
    pub fn summary(list: &[Unreadable], max: usize) -> String {
        let named: Vec<String> = list.iter().take(max).map(|u| format!("{} ({})", u.path.shown(), u.reason)).collect();
        let more = if list.len() > max { format!(" and {} more", list.len() - max) } else { String::new() };
        format!("{} unreadable image(s) skipped: {}{more}", list.len(), named.join(", "))
    }

    /// JSON list of paths (lossy: JSON holds only text) for `events.jsonl`.
    pub fn json(list: &[Unreadable]) -> serde_json::Value {
        list.iter().map(|u| serde_json::json!({"path": u.path.to_string_lossy(), "reason": u.reason})).collect()
    }
}

/// Features of a split with its labels, on the CPU.
#[derive(Debug)]
pub struct LabeledFeatures {
    /// [N, D] float32, not normalised.
    pub features: Tensor,
    /// [N] int64 class indices.
    pub labels: Tensor,
    pub classes: Vec<String>,
    pub from_cache: bool,
    /// Index in the split of each row (every image but the unreadable ones).
    pub kept: Vec<usize>,
    pub skipped: Vec<Unreadable>,
}

impl LabeledFeatures {
    /// Features of every image of a set, none skipped.
    pub fn new(features: Tensor, labels: Tensor, classes: Vec<String>, from_cache: bool) -> Self {
        let n = labels.size().first().copied().unwrap_or(0).max(0) as usize;
        Self { features, labels, classes, from_cache, kept: (0..n).collect(), skipped: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// The rows at `indices` (label sampling).
    pub fn subset(&self, indices: &[usize]) -> Self {
        let idx = Tensor::from_slice(&indices.iter().map(|&i| i as i64).collect::<Vec<_>>());
        Self {
            features: self.features.index_select(0, &idx),
            labels: self.labels.index_select(0, &idx),
            classes: self.classes.clone(),
            from_cache: self.from_cache,
            kept: indices.iter().filter_map(|&i| self.kept.get(i).copied()).collect(),
            skipped: self.skipped.clone(),
        }
    }
}

/// The views of one image: the evaluation view, or with `tta` every `TTA_SCALES` view.
fn views(img: &image::RgbImage, t: EvalTransform, tta: bool) -> Vec<f32> {
    if !tta {
        return eval_transform(img, t.resize, t.crop);
    }
    TTA_SCALES.iter().flat_map(|s| eval_transform(img, ((t.resize as f64 * s).round() as usize).max(1), t.crop)).collect()
}

/// Decodes and transforms a batch of files on `workers` threads, in order: each file's views,
/// or why it cannot be read.
fn load_views(files: &[PathBuf], t: EvalTransform, workers: usize, tta: bool) -> Vec<Result<Vec<f32>, String>> {
    decode_each(files, workers, &|img: &image::RgbImage| views(img, t, tta))
}

/// Decodes every file on `workers` threads and turns each image into pixels with `view`, in
/// order: each file's pixels, or why it cannot be read.
pub fn decode_each<F>(files: &[PathBuf], workers: usize, view: &F) -> Vec<Result<Vec<f32>, String>>
where
    F: Fn(&image::RgbImage) -> Vec<f32> + Sync,
{
    let per = files.len().div_ceil(workers.max(1)).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(per)
            .map(|chunk| {
                let h =
                    s.spawn(move || chunk.iter().map(|f| load_rgb(f).map(|img| view(&img)).map_err(|e| e.to_string())).collect::<Vec<_>>());
                (chunk.len(), h)
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|(n, h)| h.join().unwrap_or_else(|_| vec![Err("the image decoding thread panicked".to_string()); n]))
            .collect()
    })
}

/// As `load_views` without test-time augmentation, failing on the first unreadable file.
fn load_batch(files: &[PathBuf], t: EvalTransform, workers: usize) -> Result<Vec<f32>, EvalError> {
    let mut all = Vec::with_capacity(files.len() * 3 * t.crop * t.crop);
    for (f, v) in files.iter().zip(load_views(files, t, workers, false)) {
        all.extend(v.map_err(|reason| EvalError::Invalid(format!("cannot read {}: {reason}", f.shown())))?);
    }
    Ok(all)
}

/// The evaluation view of every file as one [N, 3, S, S] tensor (the supervised baseline's
/// validation input).
pub fn eval_pixels(files: &[PathBuf], t: EvalTransform, workers: usize) -> Result<Tensor, EvalError> {
    let pixels = load_batch(files, t, workers)?;
    Ok(Tensor::from_slice(&pixels).reshape([files.len() as i64, 3, t.crop as i64, t.crop as i64]))
}

/// The features of a batch of decoded views: one forward pass, or with test-time augmentation
/// the mean of the L2-normalised features of every view (and its mirror image).
fn batch_features(backbone: &Backbone, pixels: &[f32], n: i64, opts: &ExtractOptions) -> Tensor {
    let c = opts.transform.crop as i64;
    let nviews = if opts.tta { TTA_SCALES.len() as i64 } else { 1 };
    let x = Tensor::from_slice(pixels).reshape([n, nviews, 3, c, c]).to_device(opts.device);
    tch::no_grad(|| {
        if !opts.tta {
            return forward_features(backbone, &x.select(1, 0), opts.kind).to_kind(Kind::Float);
        }
        let mut sum: Option<Tensor> = None;
        for v in 0..nviews {
            let view = x.select(1, v);
            for flipped in [false, true] {
                let input = if flipped { view.flip([3]) } else { view.shallow_clone() };
                let f = l2_normalize(&forward_features(backbone, &input, opts.kind).to_kind(Kind::Float));
                sum = Some(match sum {
                    Some(s) => s + f,
                    None => f,
                });
            }
        }
        sum.map(|s| s / (2 * nviews) as f64).unwrap_or_else(|| Tensor::zeros([n, 0], (Kind::Float, opts.device)))
    })
}

/// Runs the frozen backbone over every readable image of `files`; `progress(done, total)` after
/// each batch. Returns the features, the index of each row in `files`, and the unreadable files.
pub fn extract_files(
    backbone: &Backbone,
    files: &[PathBuf],
    opts: &ExtractOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Tensor, Vec<usize>, Vec<Unreadable>), EvalError> {
    let (mut out, mut kept, mut skipped) = (vec![], vec![], vec![]);
    let mut done = 0;
    for batch in files.chunks(opts.batch_size.max(1)) {
        let mut pixels = Vec::new();
        let mut n = 0;
        for (i, v) in load_views(batch, opts.transform, opts.num_workers, opts.tta).into_iter().enumerate() {
            match v {
                Ok(v) => {
                    pixels.extend(v);
                    kept.push(done + i);
                    n += 1;
                }
                Err(reason) => skipped.push(Unreadable { path: batch[i].clone(), reason }),
            }
        }
        if n > 0 {
            out.push(batch_features(backbone, &pixels, n, opts).to_device(Device::Cpu));
        }
        done += batch.len();
        progress(done, files.len());
    }
    if kept.is_empty() && !files.is_empty() {
        let last = skipped.last().map(|u| format!("{}: {}", u.path.shown(), u.reason)).unwrap_or_default();
        return Err(EvalError::Invalid(format!("every one of the {} images is unreadable (last: {last})", files.len())));
    }
    if out.is_empty() {
        return Ok((Tensor::zeros([0, 0], (Kind::Float, Device::Cpu)), kept, skipped));
    }
    Ok((Tensor::cat(&out, 0), kept, skipped))
}

/// Features and labels of a split (all labels 0 and no classes when it is unlabeled, as
/// `pretext/`), through the cache when one is given. Unreadable images are left out of the rows
/// and listed in `skipped`.
pub fn extract_split(
    backbone: &Backbone,
    split: &Split,
    opts: &ExtractOptions,
    cache: Option<(&FeatureCache, &str)>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LabeledFeatures, EvalError> {
    let key = cache.map(|(c, identity)| (c, FeatureCache::key(identity, split, opts)));
    if let Some((c, key)) = &key {
        if let Some((features, kept)) = c.load(key, split.len()) {
            progress(split.len(), split.len());
            return Ok(labeled(split, features, kept, None));
        }
    }
    let (features, kept, skipped) = extract_files(backbone, &split.files, opts, progress)?;
    if let Some((c, key)) = &key {
        // A cache that cannot be written only costs time next run; say so in the log, go on.
        if let Err(e) = c.store(key, &features, &kept) {
            tracing::warn!("feature cache not written: {e}");
        }
    }
    Ok(labeled(split, features, kept, Some(skipped)))
}

/// The rows `kept` of a split with their features; `skipped` None when they come from the cache
/// (which keeps which rows, not why the others were left out).
fn labeled(split: &Split, features: Tensor, kept: Vec<usize>, skipped: Option<Vec<Unreadable>>) -> LabeledFeatures {
    let labels = Tensor::from_slice(&kept.iter().map(|&i| split.labels.get(i).copied().unwrap_or(0) as i64).collect::<Vec<_>>());
    let from_cache = skipped.is_none();
    let skipped = skipped.unwrap_or_else(|| {
        let mut is_kept = vec![false; split.len()];
        kept.iter().for_each(|&i| is_kept[i] = true);
        let reason = "unreadable when its features were cached".to_string();
        (0..split.len()).filter(|&i| !is_kept[i]).map(|i| Unreadable { path: split.files[i].clone(), reason: reason.clone() }).collect()
    });
    LabeledFeatures { features, labels, classes: split.classes.clone(), from_cache, kept, skipped }
}

/// Raw pixels as features, the baseline a network's features are measured against: the
/// evaluation view of every readable file flattened ([N, 3 S S]), the row index in `files` of
/// each, and the unreadable files.
pub fn pixel_features(files: &[PathBuf], t: EvalTransform, workers: usize) -> Result<(Tensor, Vec<usize>, Vec<Unreadable>), EvalError> {
    let (mut pixels, mut kept, mut skipped) = (vec![], vec![], vec![]);
    let view = |img: &image::RgbImage| eval_transform(img, t.resize, t.crop);
    // Decoded a thousand at a time: the decoders' results are held until their chunk ends.
    for (c, chunk) in files.chunks(1024).enumerate() {
        for (i, v) in decode_each(chunk, workers, &view).into_iter().enumerate() {
            match v {
                Ok(v) => {
                    pixels.extend(v);
                    kept.push(c * 1024 + i);
                }
                Err(reason) => skipped.push(Unreadable { path: chunk[i].clone(), reason }),
            }
        }
    }
    if kept.is_empty() {
        let last = skipped.last().map(|u| format!(" (last: {}: {})", u.path.shown(), u.reason)).unwrap_or_default();
        return Err(EvalError::Invalid(format!("no readable image among the {} given{last}", files.len())));
    }
    let features = Tensor::from_slice(&pixels).reshape([kept.len() as i64, (3 * t.crop * t.crop) as i64]);
    Ok((features, kept, skipped))
}

/// Rows scaled to unit L2 norm (the reference's `nn.functional.normalize(x, dim=1, p=2)`).
pub fn l2_normalize(x: &Tensor) -> Tensor {
    let norm = x.norm_scalaropt_dim(2, [1], true).clamp_min(1e-12);
    x / norm
}

/// Feature files named by a hash of everything that determines their content.
#[derive(Debug, Clone)]
pub struct FeatureCache {
    pub dir: PathBuf,
}

/// FNV-1a, 64 bit: stable across runs and platforms (std's hasher is not guaranteed to be).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl FeatureCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// `RUN_DIR/evals/cache` for a run, else the user's cache folder.
    pub fn for_run_or_user(run_dir: Option<&Path>) -> Option<Self> {
        match run_dir {
            Some(r) => Some(Self::new(r.join("evals").join("cache"))),
            None => directories::ProjectDirs::from("", "", "dino-tui").map(|d| Self::new(d.cache_dir().join("features"))),
        }
    }

    /// Weights identity, split (root, name, files, labels), transform and feature kind.
    pub fn key(identity: &str, split: &Split, opts: &ExtractOptions) -> String {
        let transform = format!("{}x{}", opts.transform.resize, opts.transform.crop);
        Self::key_for(identity, split, &transform, &opts.tag())
    }

    /// As `key` for features made some other way (`transform`: how the pixels were made; `tag`:
    /// which features, also in the file name).
    pub fn key_for(identity: &str, split: &Split, transform: &str, tag: &str) -> String {
        let mut text = format!("{identity}\n{}\n{}\n{transform}\n{tag}\n{}\n", split.root.shown(), split.name, split.len());
        for (f, l) in split.files.iter().zip(&split.labels) {
            text.push_str(&format!("{}:{l}\n", f.shown()));
        }
        format!("{}-{tag}-{:016x}", split.name, fnv1a(text.as_bytes()))
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.safetensors"))
    }

    /// The cached features of a split of `n` images and the rows they are (all of them in a
    /// cache written before unreadable images were skipped); None when absent or not matching.
    pub fn load(&self, key: &str, n: usize) -> Option<(Tensor, Vec<usize>)> {
        let p = self.path(key);
        if !p.exists() {
            return None;
        }
        let tensors = crate::model::weights::read_safetensors(&p).ok()?;
        let get = |name: &str| tensors.iter().find(|(t, _)| t == name).map(|(_, t)| t.shallow_clone());
        let features = get("features")?;
        let kept: Vec<usize> = match get("kept") {
            Some(k) => Vec::<i64>::try_from(k).ok()?.into_iter().map(|i| i as usize).collect(),
            None => (0..n).collect(),
        };
        let rows = features.size().first().copied().unwrap_or(-1);
        (rows == kept.len() as i64 && kept.iter().all(|&i| i < n)).then_some((features, kept))
    }

    pub fn store(&self, key: &str, features: &Tensor, kept: &[usize]) -> Result<(), EvalError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| EvalError::io(&self.dir, e))?;
        let p = self.path(key);
        let tmp = crate::run::dir::tmp_path(&p);
        let kept = Tensor::from_slice(&kept.iter().map(|&i| i as i64).collect::<Vec<_>>());
        Tensor::write_safetensors(&[("features", features.contiguous()), ("kept", kept)], &tmp)?;
        std::fs::rename(&tmp, &p).map_err(|e| EvalError::io(&p, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_transform_scales_the_reference_ratio() {
        assert_eq!(EvalTransform::for_crop(224), EvalTransform { resize: 256, crop: 224 });
        assert_eq!(EvalTransform::for_crop(32), EvalTransform { resize: 36, crop: 32 });
    }

    #[test]
    fn l2_rows_have_unit_norm() {
        let x = Tensor::from_slice(&[3.0f32, 4.0, 0.0, 2.0]).reshape([2, 2]);
        let n = l2_normalize(&x);
        let v: Vec<f32> = Vec::try_from(n.flatten(0, -1)).unwrap();
        assert_eq!(v, vec![0.6, 0.8, 0.0, 1.0]);
    }
}
