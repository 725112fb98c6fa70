//! Copy-detection descriptors, after the reference's `eval_copy_detection.py`: each image resized
//! whole to a square (nothing cropped, so a copy cut from an image still shows all it kept) at
//! several sizes, the last spatial feature map GeM-pooled at each (ViT: the patch tokens, with the
//! CLS token concatenated as the reference does; ResNet: the last stage), the sizes' normalised
//! descriptors summed, then PCA-whitening learned on the folder itself and cosine similarity.
//! Global pooling forgets where things are, which is what survives crops and mirroring; the
//! whitening spreads the similarity over the directions the folder's images differ in, so that two
//! images of one class are no longer as close as an image and its copy.
//!
//! Raw pixels go through the same sizes, whitening and cosine, with one change: pooling the image
//! globally would leave its mean colour, so the pixels' descriptor is the image area-pooled to a
//! `PIXEL_GRID` x `PIXEL_GRID` thumbnail.

use super::features::{decode_each, l2_normalize, Unreadable};
use super::EvalError;
use crate::data::square_transform;
use crate::files::ShowPath;
use crate::model::Backbone;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

/// Side of the thumbnail that stands for raw pixels' pooled map.
pub const PIXEL_GRID: i64 = 8;

/// What turns an image into a copy-detection descriptor.
#[derive(Clone, Copy)]
pub enum Extractor<'a> {
    Network(&'a Backbone),
    /// Raw pixels (the baseline every network is measured against).
    Pixels,
}

/// How descriptors are made; `CopyParams::for_crop` gives the measured defaults
/// (docs/evaluation.md, "Copy detection").
#[derive(Debug, Clone, PartialEq)]
pub struct CopyParams {
    /// Square sides the image is resized to, one descriptor each.
    pub sizes: Vec<usize>,
    /// GeM exponent: 1 averages the map, large values approach its maximum.
    pub gem_p: f64,
    /// Whitened dimensions kept (the largest principal components); 0 keeps all, at most half
    /// the folder's images.
    pub whitening_dims: usize,
    /// ViT: concatenate the CLS token to the pooled patch tokens.
    pub cls: bool,
    /// Also describe each image's mirror image and add it, which makes the descriptor blind to
    /// left-right flips.
    pub mirror: bool,
    /// Standardise each image's intensities first (one mean and one deviation over all its
    /// pixels and channels): a brightness and contrast change, an affine map of the intensities,
    /// then changes nothing but where it clipped.
    pub photometric: bool,
    /// Sides, as shares of the image's side, of the regions each image is also described by (at
    /// 3 x 3 places: corners, edge middles, centre; at every size, as the whole image), so that a
    /// copy cropped from an image meets the region it was cut from (`copy_pairs`). Empty: the
    /// whole image only.
    pub regions: Vec<f64>,
}

/// Places of the regions of one side share, as shares of the room left: 3 x 3, row by row.
const REGION_PLACES: [f64; 3] = [0.0, 0.5, 1.0];

impl CopyParams {
    /// The defaults for a network that trained at `crop` pixels and whose last map has one cell
    /// per `stride` pixels: the crop and 1.5 times it, each at least large enough for a 2x2 and a
    /// 3x3 map (a ResNet's last stage is 1x1 at 32 px with torchvision's stem: nothing to pool).
    pub fn for_network(crop: usize, stride: usize) -> Self {
        let (crop, stride) = (crop.max(1), stride.max(1));
        Self {
            sizes: vec![crop.max(2 * stride), (crop * 3 / 2).max(3 * stride)],
            gem_p: 4.0,
            whitening_dims: 0,
            cls: true,
            mirror: true,
            photometric: true,
            // Measured on the planted set (docs/evaluation.md): regions found no more crops, at
            // five times the time; off unless asked for.
            regions: vec![],
        }
    }

    /// Descriptors per image: the whole image's, then each region's.
    pub fn views(&self) -> usize {
        1 + self.regions.len() * REGION_PLACES.len() * REGION_PLACES.len()
    }

    /// The defaults for raw pixels at `crop` pixels: one size, as a thumbnail looks the same at
    /// any.
    pub fn for_pixels(crop: usize) -> Self {
        Self { sizes: vec![crop.max(1)], ..Self::for_network(crop, 1) }
    }

    /// The defaults for an extractor.
    pub fn for_extractor(ex: Extractor, crop: usize) -> Self {
        match ex {
            Extractor::Network(b) => Self::for_network(crop, b.feature_stride()),
            Extractor::Pixels => Self::for_pixels(crop),
        }
    }

    /// Text that changes whenever the descriptors would (the feature cache's key and file name).
    pub fn tag(&self) -> String {
        let sizes: Vec<String> = self.sizes.iter().map(usize::to_string).collect();
        let regions: Vec<String> = self.regions.iter().map(|r| format!("{r}")).collect();
        let flags = [(self.cls, "-cls"), (self.mirror, "-mirror"), (self.photometric, "-photometric")];
        let flags: String = flags.iter().filter(|f| f.0).map(|f| f.1).collect();
        format!("copy2-{}-p{}{flags}-r{}", sizes.join("_"), self.gem_p, regions.join("_"))
    }
}

/// GeM pooling of a [B, C, h, w] map: (mean over the grid of max(x, 1e-6)^p)^(1/p), [B, C].
pub fn gem(map: &Tensor, p: f64) -> Tensor {
    map.clamp_min(1e-6).pow_tensor_scalar(p).mean_dim([2i64, 3].as_slice(), false, Kind::Float).pow_tensor_scalar(1.0 / p)
}

/// The descriptor of a batch at one size, [B, D], L2-normalised.
fn describe(ex: Extractor, x: &Tensor, p: &CopyParams) -> Tensor {
    let d = match ex {
        Extractor::Pixels => x.adaptive_avg_pool2d([PIXEL_GRID, PIXEL_GRID]).flatten(1, -1),
        Extractor::Network(b) => {
            let f = b.spatial_features(x);
            let pooled = gem(&f.map.to_kind(Kind::Float), p.gem_p);
            match f.cls.filter(|_| p.cls) {
                Some(cls) => Tensor::cat(&[cls.to_kind(Kind::Float), pooled], 1),
                None => pooled,
            }
        }
    };
    l2_normalize(&d)
}

/// The descriptor of `x` at one size, plus its mirror image's when `p.mirror`, [B, D].
fn describe_both(ex: Extractor, x: &Tensor, p: &CopyParams) -> Tensor {
    let d = describe(ex, x, p);
    match p.mirror {
        true => d + describe(ex, &x.flip([3]), p),
        false => d,
    }
}

/// Descriptors of a batch of decoded images (`pixels`: each image's views, `image_views`, one
/// image after the other), [n, views, D], not yet whitened: the whole image's, then each
/// region's, each the sum over the sizes of its normalised descriptors.
fn batch_descriptors(ex: Extractor, pixels: &[f32], n: i64, p: &CopyParams, device: Device) -> Tensor {
    let views = p.views() as i64;
    let per_image: i64 = p.sizes.iter().map(|&s| views * 3 * (s * s) as i64).sum();
    let all = Tensor::from_slice(pixels).reshape([n, per_image]).to_device(device);
    tch::no_grad(|| {
        let mut sum: Option<Tensor> = None;
        let mut offset = 0i64;
        for &s in &p.sizes {
            let (s, len) = (s as i64, views * 3 * (s * s) as i64);
            let x = all.narrow(1, offset, len).reshape([n * views, 3, s, s]);
            let d = describe_both(ex, &x, p).reshape([n, views, -1]);
            sum = Some(match sum {
                Some(t) => t + d,
                None => d,
            });
            offset += len;
        }
        sum.unwrap_or_else(|| Tensor::zeros([n, views, 0], (Kind::Float, device))).to_device(Device::Cpu)
    })
}

/// An image's intensities standardised (one mean and deviation over all pixels and channels)
/// and given a middle grey mean and a usual spread, so that the network still sees an image.
fn standardised(img: &image::RgbImage) -> image::RgbImage {
    let raw = img.as_raw();
    let n = raw.len().max(1) as f64;
    let mean = raw.iter().map(|&v| v as f64).sum::<f64>() / n;
    let sd = (raw.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt().max(1.0);
    let mut out = img.clone();
    for v in out.iter_mut() {
        *v = (118.0 + 60.0 * (*v as f64 - mean) / sd).round().clamp(0.0, 255.0) as u8;
    }
    out
}

/// Every view of one image `descriptors` reads: at each size, the whole image, then its
/// regions, resized to a square of that size, as normalised CHW pixels one after the other.
fn image_views(img: &image::RgbImage, p: &CopyParams) -> Vec<f32> {
    let img = if p.photometric { standardised(img) } else { img.clone() };
    let (w, h) = img.dimensions();
    let mut views = vec![img.clone()];
    for &share in &p.regions {
        let (cw, ch) = (((w as f64 * share).round() as u32).clamp(1, w.max(1)), ((h as f64 * share).round() as u32).clamp(1, h.max(1)));
        for fy in REGION_PLACES {
            for fx in REGION_PLACES {
                let (x, y) = (((w - cw) as f64 * fx).round() as u32, ((h - ch) as f64 * fy).round() as u32);
                views.push(image::imageops::crop_imm(&img, x, y, cw, ch).to_image());
            }
        }
    }
    p.sizes.iter().flat_map(|&s| views.iter().flat_map(move |v| square_transform(v, s))).collect()
}

/// The descriptors of every readable file (not yet whitened), in batches of `batch` decoded on
/// `workers` threads; `progress(done, total)` after each batch. Returns the descriptors, the
/// index in `files` of each row and the unreadable files.
pub fn descriptors(
    ex: Extractor,
    files: &[PathBuf],
    p: &CopyParams,
    (device, batch, workers): (Device, usize, usize),
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Tensor, Vec<usize>, Vec<Unreadable>), EvalError> {
    if p.sizes.is_empty() || p.sizes.contains(&0) {
        return Err(EvalError::Invalid(format!("copy detection needs image sizes of at least 1 pixel, not {:?}", p.sizes)));
    }
    if p.regions.iter().any(|r| !(*r > 0.0 && *r <= 1.0)) {
        return Err(EvalError::Invalid(format!("copy detection's regions are shares of the side in (0, 1], not {:?}", p.regions)));
    }
    let view = |img: &image::RgbImage| image_views(img, p);
    let (mut out, mut kept, mut skipped) = (vec![], vec![], vec![]);
    let mut done = 0;
    // A batch of `batch` views at a time, whole images and regions together.
    for chunk in files.chunks((batch / p.views()).max(1)) {
        let (mut pixels, mut n) = (vec![], 0);
        for (i, v) in decode_each(chunk, workers, &view).into_iter().enumerate() {
            match v {
                Ok(v) => {
                    pixels.extend(v);
                    kept.push(done + i);
                    n += 1;
                }
                Err(reason) => skipped.push(Unreadable { path: chunk[i].clone(), reason }),
            }
        }
        if n > 0 {
            out.push(batch_descriptors(ex, &pixels, n, p, device));
        }
        done += chunk.len();
        progress(done, files.len());
    }
    if out.is_empty() {
        let last = skipped.last().map(|u| format!(" (last: {}: {})", u.path.shown(), u.reason)).unwrap_or_default();
        return Err(EvalError::Invalid(format!("no readable image among the {} given{last}", files.len())));
    }
    Ok((Tensor::cat(&out, 0), kept, skipped))
}

/// PCA-whitening learned on some rows, to apply to any: the rows' mean and the projection on
/// their largest principal components, each scaled by 1 / sqrt(its variance), as the reference's
/// `PCA(whit=0.5)` does (variances below 1e-5 of the largest raised to it, so that noise
/// directions do not explode).
pub struct Whitening {
    mean: Tensor,
    projection: Option<Tensor>,
}

impl Whitening {
    /// Learned on the rows of `x` [N, D], keeping `dims` components (0: D), at most N / 2: N
    /// points whitened in N - 1 dimensions or more are all equally far apart (a simplex), every
    /// cosine -1 / (N - 1), and nothing is left to rank.
    pub fn learn(x: &Tensor, dims: usize) -> Self {
        let (n, d) = (x.size()[0], x.size().get(1).copied().unwrap_or(0));
        let keep = match dims {
            0 => d,
            k => (k as i64).min(d),
        }
        .min(n / 2);
        let x = x.to_kind(Kind::Double);
        let mean = x.mean_dim(0, true, Kind::Double);
        if keep < 1 {
            return Self { mean, projection: None };
        }
        let centred = &x - &mean;
        let cov = centred.tr().matmul(&centred) / n as f64;
        // Ascending eigenvalues: the largest are the last columns.
        let (values, vectors) = cov.linalg_eigh("L");
        let values = values.narrow(0, d - keep, keep);
        let floor = values.max().double_value(&[]) * 1e-5;
        let scale = values.clamp_min(floor.max(1e-12)).rsqrt();
        Self { mean, projection: Some(vectors.narrow(1, d - keep, keep) * scale.unsqueeze(0)) }
    }

    /// Rows [.., D] centred, projected and L2-normalised (only normalised when nothing could be
    /// learned).
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let shape = x.size();
        let d = shape.last().copied().unwrap_or(0);
        let Some(projection) = &self.projection else { return l2_normalize(&x.reshape([-1, d])).reshape(shape.as_slice()) };
        let rows = (x.reshape([-1, d]).to_kind(Kind::Double) - &self.mean).matmul(projection).to_kind(Kind::Float);
        let mut out_shape = shape[..shape.len() - 1].to_vec();
        out_shape.push(-1);
        l2_normalize(&rows).reshape(out_shape.as_slice())
    }
}

/// Descriptors as `descriptors` makes them ([N, views, D], or [N, D] for the whole images
/// alone) whitened on the whole images' and normalised, ready for `copy_pairs`: the whole
/// images' [N, D] and the regions' [N, R, D] (None without regions).
pub fn prepare(descriptors: &Tensor, dims: usize) -> (Tensor, Option<Tensor>) {
    if descriptors.dim() < 3 {
        return (whiten(descriptors, dims), None);
    }
    let views = descriptors.size()[1];
    let whole = descriptors.select(1, 0);
    let w = Whitening::learn(&whole, dims);
    let regions = (views > 1).then(|| w.apply(&descriptors.narrow(1, 1, views - 1)));
    (w.apply(&whole), regions)
}

/// PCA-whitening learned on the rows themselves, then L2 normalisation (`Whitening`).
pub fn whiten(x: &Tensor, dims: usize) -> Tensor {
    Whitening::learn(x, dims).apply(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gem_lies_between_the_mean_and_the_maximum() {
        let map = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 10.0]).reshape([1, 1, 2, 2]);
        let g = |p: f64| gem(&map, p).double_value(&[0, 0]);
        assert!((g(1.0) - 4.0).abs() < 1e-5, "p = 1 is the mean");
        assert!(g(4.0) > 4.0 && g(4.0) < 10.0);
        assert!(g(50.0) > 9.0, "large p approaches the maximum");
        // Negative values (ViT tokens) count as 1e-6, as the reference clamps them.
        let neg = Tensor::from_slice(&[-5.0f32, 2.0]).reshape([1, 1, 1, 2]);
        assert!((gem(&neg, 1.0).double_value(&[0, 0]) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn whitened_rows_are_unit_length_and_uncorrelated() {
        tch::manual_seed(1);
        // Correlated features: one direction carries most of the variance.
        let base = Tensor::randn([200, 4], (Kind::Float, Device::Cpu));
        let mix = Tensor::from_slice(&[5.0f32, 0.0, 0.0, 0.0, 4.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.5, 0.2]).reshape([4, 4]);
        let w = whiten(&base.matmul(&mix), 0);
        assert_eq!(w.size(), vec![200, 4]);
        let norms = w.norm_scalaropt_dim(2, [1], false);
        assert!((norms - 1.0).abs().max().double_value(&[]) < 1e-5);
        // Before the final normalisation the covariance is the identity; after it, still close to
        // a multiple of it: no direction dominates.
        let cov = w.tr().matmul(&w) / 200.0;
        let diag = cov.diag(0);
        assert!(diag.min().double_value(&[]) > 0.15 && diag.max().double_value(&[]) < 0.35, "{diag:?}");
        assert_eq!(whiten(&base, 2).size(), vec![200, 2]);
        // One row: nothing to learn, only normalised.
        assert_eq!(whiten(&base.narrow(0, 0, 1), 0).size(), vec![1, 4]);
    }

    #[test]
    fn the_tag_changes_with_every_setting() {
        let p = CopyParams::for_network(32, 32);
        assert_eq!(p.sizes, vec![64, 96], "a 2x2 and a 3x3 map of a ResNet with torchvision's stem");
        assert_eq!(CopyParams::for_network(224, 16).sizes, vec![224, 336]);
        assert_eq!(CopyParams::for_pixels(32).sizes, vec![32]);
        let tags = [
            p.tag(),
            CopyParams { gem_p: 3.0, ..p.clone() }.tag(),
            CopyParams { sizes: vec![64], ..p.clone() }.tag(),
            CopyParams { cls: false, ..p.clone() }.tag(),
            CopyParams { mirror: false, ..p.clone() }.tag(),
        ];
        let unique: std::collections::BTreeSet<_> = tags.iter().collect();
        assert_eq!(unique.len(), tags.len(), "{tags:?}");
    }
}
