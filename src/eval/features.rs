//! Frozen features of a labeled split: the evaluation transform (the reference's Resize 256 /
//! CenterCrop 224, scaled to the model's crop size), batched forward passes on CPU or CUDA with a
//! progress callback, and an on-disk cache keyed by (weights identity, split, transform, kind) so a
//! second evaluation of the same checkpoint is instant and a changed checkpoint is never served stale.

use super::EvalError;
use crate::data::{eval_transform, load_rgb, Split};
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
    fn tag(self) -> String {
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
}

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
        }
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
}

impl LabeledFeatures {
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
        }
    }
}

/// Decodes and transforms a batch of files on `workers` threads, in order.
fn load_batch(files: &[PathBuf], t: EvalTransform, workers: usize) -> Result<Vec<f32>, EvalError> {
    let per = files.len().div_ceil(workers.max(1)).max(1);
    let parts: Vec<Result<Vec<f32>, EvalError>> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(per)
            .map(|chunk| {
                s.spawn(move || {
                    let mut out = Vec::with_capacity(chunk.len() * 3 * t.crop * t.crop);
                    for f in chunk {
                        let img = load_rgb(f).map_err(crate::data::DataError::from)?;
                        out.extend(eval_transform(&img, t.resize, t.crop));
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(EvalError::Invalid("an image decoding thread panicked".into()))))
            .collect()
    });
    let mut all = Vec::with_capacity(files.len() * 3 * t.crop * t.crop);
    for p in parts {
        all.extend(p?);
    }
    Ok(all)
}

/// The evaluation view of every file as one [N, 3, S, S] tensor (the supervised baseline's
/// validation input).
pub fn eval_pixels(files: &[PathBuf], t: EvalTransform, workers: usize) -> Result<Tensor, EvalError> {
    let pixels = load_batch(files, t, workers)?;
    Ok(Tensor::from_slice(&pixels).reshape([files.len() as i64, 3, t.crop as i64, t.crop as i64]))
}

/// Runs the frozen backbone over every image of `files`; `progress(done, total)` after each batch.
pub fn extract_files(
    backbone: &Backbone,
    files: &[PathBuf],
    opts: &ExtractOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Tensor, EvalError> {
    let c = opts.transform.crop as i64;
    let mut out = vec![];
    let mut done = 0;
    for batch in files.chunks(opts.batch_size.max(1)) {
        let pixels = load_batch(batch, opts.transform, opts.num_workers)?;
        let x = Tensor::from_slice(&pixels).reshape([batch.len() as i64, 3, c, c]).to_device(opts.device);
        let f = tch::no_grad(|| forward_features(backbone, &x, opts.kind));
        out.push(f.to_kind(Kind::Float).to_device(Device::Cpu));
        done += batch.len();
        progress(done, files.len());
    }
    if out.is_empty() {
        return Ok(Tensor::zeros([0, 0], (Kind::Float, Device::Cpu)));
    }
    Ok(Tensor::cat(&out, 0))
}

/// Features and labels of a split (all labels 0 and no classes when it is unlabeled, as
/// `pretext/`), through the cache when one is given.
pub fn extract_split(
    backbone: &Backbone,
    split: &Split,
    opts: &ExtractOptions,
    cache: Option<(&FeatureCache, &str)>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LabeledFeatures, EvalError> {
    let labels = Tensor::from_slice(&split.labels.iter().map(|&l| l as i64).collect::<Vec<_>>());
    let key = cache.map(|(c, identity)| (c, FeatureCache::key(identity, split, opts)));
    if let Some((c, key)) = &key {
        if let Some(features) = c.load(key) {
            if features.size().first() == Some(&(split.len() as i64)) {
                progress(split.len(), split.len());
                return Ok(LabeledFeatures { features, labels, classes: split.classes.clone(), from_cache: true });
            }
        }
    }
    let features = extract_files(backbone, &split.files, opts, progress)?;
    if let Some((c, key)) = &key {
        // A cache that cannot be written only costs time next run; say so in the log, go on.
        if let Err(e) = c.store(key, &features) {
            tracing::warn!("feature cache not written: {e}");
        }
    }
    Ok(LabeledFeatures { features, labels, classes: split.classes.clone(), from_cache: false })
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
        let mut text = format!(
            "{identity}\n{}\n{}\n{}x{}\n{}\n{}\n",
            split.root.display(),
            split.name,
            opts.transform.resize,
            opts.transform.crop,
            opts.kind.tag(),
            split.len()
        );
        for (f, l) in split.files.iter().zip(&split.labels) {
            text.push_str(&format!("{}:{l}\n", f.display()));
        }
        format!("{}-{}-{:016x}", split.name, opts.kind.tag(), fnv1a(text.as_bytes()))
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.safetensors"))
    }

    pub fn load(&self, key: &str) -> Option<Tensor> {
        let p = self.path(key);
        if !p.exists() {
            return None;
        }
        Tensor::read_safetensors(&p).ok()?.into_iter().find(|(n, _)| n == "features").map(|(_, t)| t)
    }

    pub fn store(&self, key: &str, features: &Tensor) -> Result<(), EvalError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| EvalError::io(&self.dir, e))?;
        let p = self.path(key);
        let tmp = crate::run::dir::tmp_path(&p);
        Tensor::write_safetensors(&[("features", features.contiguous())], &tmp)?;
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
