//! DINO's multi-crop augmentation, `DataAugmentationDINO` of the reference `main_dino.py`, with
//! torchvision-on-PIL semantics for every step: RandomResizedCrop (bicubic), horizontal flip,
//! colour jitter (p = 0.8, factors in a random order), random grayscale, Gaussian blur (PIL's
//! three-pass box approximation), solarization, ToTensor and ImageNet normalisation.
//!
//! Everything works on packed 8-bit RGB buffers, the same integer rounding as PIL, so the views a
//! model sees here are the views it would have seen in the reference; only the random streams
//! differ (ChaCha8 instead of torch's and Python's generators).

use super::resample::{crop_resize_bicubic, Rect};
use image::RgbImage;
use rand::seq::SliceRandom;
use rand::Rng;

pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
const RATIO: (f64, f64) = (3.0 / 4.0, 4.0 / 3.0);

#[derive(Debug, Clone, PartialEq)]
pub struct AugmentConfig {
    pub global_size: usize,
    pub local_size: usize,
    pub global_scale: (f64, f64),
    pub local_scale: (f64, f64),
    pub local_crops_number: usize,
    /// Blur radius range; a zero maximum turns blur off.
    pub blur_sigma: (f64, f64),
    pub colour: ColourAugment,
}

/// The colour steps of the augmentation and how likely each is. The reference hard-codes
/// [`ColourAugment::dino`]. They are settings because the right strength depends on whether
/// colour tells the data's classes apart; on cifar-vehicles (sky, water) neither weaker nor
/// stronger colour steps beat the reference's (docs/evaluation.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColourAugment {
    /// Probability of colour jitter (`RandomApply([ColorJitter], p)`).
    pub jitter_p: f64,
    /// torchvision's `ColorJitter(brightness, contrast, saturation, hue)`: factors drawn from
    /// `[1 - x, 1 + x]` for the first three, a hue shift from `[-x, x]` (x <= 0.5) for the last.
    pub jitter: [f64; 4],
    /// Probability of `RandomGrayscale`.
    pub grayscale_p: f64,
    /// Probability of solarization for the second global crop (the only crop the reference
    /// solarizes).
    pub solarize_p: f64,
}

impl ColourAugment {
    /// `DataAugmentationDINO`'s values.
    pub const fn dino() -> Self {
        Self { jitter_p: 0.8, jitter: [0.4, 0.4, 0.2, 0.1], grayscale_p: 0.2, solarize_p: 0.2 }
    }
}

impl AugmentConfig {
    pub fn num_crops(&self) -> usize {
        2 + self.local_crops_number
    }

    /// Side in pixels of crop `i` in output order (two globals, then locals).
    pub fn crop_size(&self, i: usize) -> usize {
        if i < 2 {
            self.global_size
        } else {
            self.local_size
        }
    }
}

/// A packed RGB8 image we own while transforming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rgb8 {
    pub w: usize,
    pub h: usize,
    pub data: Vec<u8>,
}

impl Rgb8 {
    pub fn from_image(img: &RgbImage) -> Self {
        Self { w: img.width() as usize, h: img.height() as usize, data: img.as_raw().clone() }
    }
}

/// Which random steps a crop gets; the rest (crop, flip, jitter, grayscale) are shared by all.
#[derive(Debug, Clone, Copy)]
struct CropRecipe {
    size: usize,
    scale: (f64, f64),
    blur_p: f64,
    solarize_p: f64,
}

/// The multi-crop transform, built once and shared by the loader's workers.
#[derive(Debug, Clone)]
pub struct MultiCropAugment {
    config: AugmentConfig,
    recipes: Vec<CropRecipe>,
    jitter: ColorJitter,
    norm: NormalizeLut,
}

impl MultiCropAugment {
    pub fn new(config: AugmentConfig) -> Self {
        let global = |blur_p, solarize_p| CropRecipe { size: config.global_size, scale: config.global_scale, blur_p, solarize_p };
        let mut recipes = vec![global(1.0, 0.0), global(0.1, config.colour.solarize_p)];
        recipes.extend(std::iter::repeat_n(
            CropRecipe { size: config.local_size, scale: config.local_scale, blur_p: 0.5, solarize_p: 0.0 },
            config.local_crops_number,
        ));
        let jitter = ColorJitter::new(config.colour.jitter);
        Self { config, recipes, jitter, norm: NormalizeLut::imagenet() }
    }

    pub fn config(&self) -> &AugmentConfig {
        &self.config
    }

    /// All crops of one image, `[global1, global2, local1..localN]`, each CHW float32.
    pub fn apply<R: Rng>(&self, img: &RgbImage, rng: &mut R) -> Vec<Vec<f32>> {
        let src = Rgb8::from_image(img);
        self.recipes.iter().map(|r| self.norm.to_chw(&self.one_crop(&src, r, rng))).collect()
    }

    /// Like [`apply`](Self::apply) but writes crop `i` into `out[i]` (length `3 * size * size`),
    /// so the loader can fill batch buffers without an extra copy.
    pub fn apply_into<R: Rng>(&self, img: &RgbImage, rng: &mut R, out: &mut [&mut [f32]]) {
        let src = Rgb8::from_image(img);
        for (r, dst) in self.recipes.iter().zip(out.iter_mut()) {
            self.norm.write_chw(&self.one_crop(&src, r, rng), dst);
        }
    }

    fn one_crop<R: Rng>(&self, src: &Rgb8, r: &CropRecipe, rng: &mut R) -> Rgb8 {
        let rect = random_resized_crop_params(src.w, src.h, r.scale, RATIO, rng);
        let mut img = Rgb8 { w: r.size, h: r.size, data: crop_resize_bicubic(&src.data, src.w, rect, r.size, r.size) };
        // Python's torchvision draws `torch.rand(1) < p` for flip and grayscale and
        // `p < torch.rand(1)` to skip RandomApply; the comparisons are kept as written.
        if rng.random::<f64>() < 0.5 {
            hflip(&mut img);
        }
        let colour = &self.config.colour;
        // `RandomApply` applies when `p >= rand`; p = 0 must mean never, a draw of exactly 0 too.
        if rng.random::<f64>() <= colour.jitter_p && colour.jitter_p > 0.0 {
            self.jitter.sample(rng).apply(&mut img);
        }
        if rng.random::<f64>() < colour.grayscale_p {
            grayscale(&mut img);
        }
        let (lo, hi) = self.config.blur_sigma;
        if hi > 0.0 && rng.random::<f64>() <= r.blur_p {
            let radius = if hi > lo { rng.random_range(lo..hi) } else { hi };
            gaussian_blur(&mut img, radius);
        }
        if r.solarize_p > 0.0 && rng.random::<f64>() < r.solarize_p {
            solarize(&mut img, 128);
        }
        img
    }
}

/// torchvision's `RandomResizedCrop.get_params`: ten tries at a random area and log-uniform
/// aspect ratio, then a centre crop with the ratio clamped into range.
pub(crate) fn random_resized_crop_params<R: Rng>(width: usize, height: usize, scale: (f64, f64), ratio: (f64, f64), rng: &mut R) -> Rect {
    let area = (width * height) as f64;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target_area = area * uniform(rng, scale.0, scale.1);
        let aspect = uniform(rng, log_lo, log_hi).exp();
        // Python's round() rounds halves to even.
        let w = (target_area * aspect).sqrt().round_ties_even() as usize;
        let h = (target_area / aspect).sqrt().round_ties_even() as usize;
        if 0 < w && w <= width && 0 < h && h <= height {
            let y0 = rng.random_range(0..=height - h);
            let x0 = rng.random_range(0..=width - w);
            return Rect { x0, y0, w, h };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < ratio.0 {
        (width, ((width as f64 / ratio.0).round_ties_even() as usize).clamp(1, height))
    } else if in_ratio > ratio.1 {
        (((height as f64 * ratio.1).round_ties_even() as usize).clamp(1, width), height)
    } else {
        (width, height)
    };
    Rect { x0: (width - w) / 2, y0: (height - h) / 2, w, h }
}

/// torch's `uniform_(a, b)`; equal bounds give the bound (a degenerate range is legal there).
fn uniform<R: Rng>(rng: &mut R, a: f64, b: f64) -> f64 {
    a + (b - a) * rng.random::<f64>()
}

pub(crate) fn hflip(img: &mut Rgb8) {
    for row in img.data.chunks_exact_mut(img.w * 3) {
        let (mut i, mut j) = (0, img.w.saturating_sub(1));
        while i < j {
            for c in 0..3 {
                row.swap(i * 3 + c, j * 3 + c);
            }
            i += 1;
            j -= 1;
        }
    }
}

/// PIL's `convert("L")`: ITU-R 601-2 luma in 16-bit fixed point, rounded.
#[inline(always)]
fn luma(p: &[u8]) -> u8 {
    ((u32::from(p[0]) * 19595 + u32::from(p[1]) * 38470 + u32::from(p[2]) * 7471 + 0x8000) >> 16) as u8
}

/// `RandomGrayscale`'s output: the luma copied into all three channels.
pub(crate) fn grayscale(img: &mut Rgb8) {
    for p in img.data.chunks_exact_mut(3) {
        let l = luma(p);
        p.fill(l);
    }
}

/// PIL's `Image.blend(degenerate, img, alpha)`, per channel value, truncating like its C code.
#[inline(always)]
fn blend(degenerate: f32, v: f32, alpha: f32) -> u8 {
    // Same as PIL's clip-then-truncate, written branch-free so the loops vectorise.
    (degenerate + alpha * (v - degenerate)).clamp(0.0, 255.0) as u8
}

/// The four colour-jitter factors and the order to apply them in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct JitterParams {
    pub order: [u8; 4],
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
}

impl JitterParams {
    pub fn apply(&self, img: &mut Rgb8) {
        for op in self.order {
            match op {
                0 => adjust_brightness(img, self.brightness),
                1 => adjust_contrast(img, self.contrast),
                2 => adjust_saturation(img, self.saturation),
                _ => adjust_hue(img, self.hue),
            }
        }
    }
}

/// `ColorJitter(brightness, contrast, saturation, hue)` ranges.
#[derive(Debug, Clone)]
struct ColorJitter {
    brightness: (f64, f64),
    contrast: (f64, f64),
    saturation: (f64, f64),
    hue: (f64, f64),
}

impl ColorJitter {
    /// torchvision's ranges for `ColorJitter(b, c, s, h)`: `[max(0, 1 - x), 1 + x]` and `[-h, h]`.
    fn new([b, c, s, h]: [f64; 4]) -> Self {
        let factor = |x: f64| ((1.0 - x).max(0.0), 1.0 + x);
        Self { brightness: factor(b), contrast: factor(c), saturation: factor(s), hue: (-h, h) }
    }

    /// Same draw order as torchvision's `get_params`: permutation first, then the factors. A
    /// zero range still draws (torchvision skips it), so changing one strength leaves the
    /// others' random draws, and every other crop's, where they were.
    fn sample<R: Rng>(&self, rng: &mut R) -> JitterParams {
        let mut order = [0u8, 1, 2, 3];
        order.shuffle(rng);
        JitterParams {
            order,
            brightness: uniform(rng, self.brightness.0, self.brightness.1) as f32,
            contrast: uniform(rng, self.contrast.0, self.contrast.1) as f32,
            saturation: uniform(rng, self.saturation.0, self.saturation.1) as f32,
            hue: uniform(rng, self.hue.0, self.hue.1) as f32,
        }
    }
}

fn apply_lut(img: &mut Rgb8, lut: &[u8; 256]) {
    for v in img.data.iter_mut() {
        *v = lut[usize::from(*v)];
    }
}

pub(crate) fn adjust_brightness(img: &mut Rgb8, factor: f32) {
    let lut: [u8; 256] = std::array::from_fn(|v| blend(0.0, v as f32, factor));
    apply_lut(img, &lut);
}

pub(crate) fn adjust_contrast(img: &mut Rgb8, factor: f32) {
    let n = (img.w * img.h).max(1) as f64;
    let sum: u64 = img.data.chunks_exact(3).map(|p| u64::from(luma(p))).sum();
    let mean = (sum as f64 / n + 0.5) as u32 as f32;
    let lut: [u8; 256] = std::array::from_fn(|v| blend(mean, v as f32, factor));
    apply_lut(img, &lut);
}

pub(crate) fn adjust_saturation(img: &mut Rgb8, factor: f32) {
    for p in img.data.chunks_exact_mut(3) {
        let l = f32::from(luma(p));
        for v in p.iter_mut() {
            *v = blend(l, f32::from(*v), factor);
        }
    }
}

/// torchvision's PIL `adjust_hue`: to 8-bit HSV, add `hue * 255` (truncated, wrapping) to H,
/// back to RGB, with PIL's own rounding in both conversions.
pub(crate) fn adjust_hue(img: &mut Rgb8, hue: f32) {
    let shift = (hue * 255.0) as i32 as u8;
    if shift == 0 {
        return;
    }
    for p in img.data.chunks_exact_mut(3) {
        let (h, s, v) = rgb_to_hsv(p[0], p[1], p[2]);
        let (r, g, b) = hsv_to_rgb(h.wrapping_add(shift), s, v);
        p[0] = r;
        p[1] = g;
        p[2] = b;
    }
}

// The two conversions below follow Pillow's `rgb2hsv`/`hsv2rgb` (Convert.c) including which
// operations are done in float and which in double; libm calls are replaced by casts that give
// the same results on the non-negative values that occur here, which is most of their cost.
#[inline(always)]
fn rgb_to_hsv(r: u8, g: u8, b: u8) -> (u8, u8, u8) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    if maxc == minc {
        return (0, 0, maxc);
    }
    let cr = f32::from(maxc - minc);
    let s = cr / f32::from(maxc);
    let rc = f32::from(maxc - r) / cr;
    let gc = f32::from(maxc - g) / cr;
    let bc = f32::from(maxc - b) / cr;
    let h = if r == maxc {
        bc - gc
    } else if g == maxc {
        2.0 + rc - bc
    } else {
        4.0 + gc - rc
    };
    // fmod(h / 6 + 1, 1) for h / 6 + 1 in [0, 2).
    let h6 = f64::from(h) / 6.0 + 1.0;
    let h = (if h6 >= 1.0 { h6 - 1.0 } else { h6 }) as f32;
    let to8 = |x: f32| ((f64::from(x) * 255.0) as i32).clamp(0, 255) as u8;
    (to8(h), to8(s), maxc)
}

#[inline(always)]
fn hsv_to_rgb(h: u8, s: u8, v: u8) -> (u8, u8, u8) {
    if s == 0 {
        return (v, v, v);
    }
    let hd = f64::from(h) * 6.0 / 255.0;
    let i = hd as i32;
    let f = (hd - f64::from(i)) as f32;
    let fs = (f64::from(s) / 255.0) as f32;
    let vd = f64::from(v);
    // round() of a non-negative value.
    let to8 = |x: f64| ((x + 0.5) as i32).clamp(0, 255) as u8;
    let p = to8(vd * (1.0 - f64::from(fs)));
    let q = to8(vd * (1.0 - f64::from(fs * f)));
    let t = to8(vd * (1.0 - f64::from(fs) * (1.0 - f64::from(f))));
    match i % 6 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

/// `ImageOps.solarize`: values at or above the threshold are inverted.
pub(crate) fn solarize(img: &mut Rgb8, threshold: u8) {
    for v in img.data.iter_mut() {
        if *v >= threshold {
            *v = 255 - *v;
        }
    }
}

/// PIL's `ImageFilter.GaussianBlur(radius)`: three box-blur passes per axis whose (fractional)
/// box radius gives the Gaussian's variance (Gwosdek et al. 2011), in 8-bit between passes.
pub(crate) fn gaussian_blur(img: &mut Rgb8, radius: f64) {
    let r = box_radius_for_gaussian(radius as f32, 3);
    if r == 0.0 {
        return;
    }
    let weights = BoxWeights::new(r);
    let (w, h) = (img.w, img.h);
    let mut line = Vec::new();
    let mut tmp = vec![0u8; w * 3];
    for row in img.data.chunks_exact_mut(w * 3) {
        for _ in 0..3 {
            box_blur_line(row, &mut tmp, weights, &mut line);
            row.copy_from_slice(&tmp);
        }
    }
    // Columns: the same sums, slid down whole rows at a time so the inner loop runs over
    // contiguous memory (PIL transposes instead; the arithmetic is identical).
    let mut out = vec![0u8; img.data.len()];
    for _ in 0..3 {
        box_blur_columns(&img.data, &mut out, w * 3, h, weights);
        std::mem::swap(&mut img.data, &mut out);
    }
}

/// PIL's fixed-point weights for a box of fractional radius: `ww` for the `2r+1` full taps,
/// `fw` for the two partial ones just outside.
#[derive(Debug, Clone, Copy)]
struct BoxWeights {
    r: usize,
    ww: u32,
    fw: u32,
}

impl BoxWeights {
    fn new(radius: f32) -> Self {
        let r = radius as usize;
        let ww = ((1u32 << 24) as f32 / (radius * 2.0 + 1.0)) as u32;
        let fw = ((1u32 << 24) - (r as u32 * 2 + 1) * ww) / 2;
        Self { r, ww, fw }
    }

    #[inline(always)]
    fn out(&self, acc: u32, far: u32) -> u8 {
        ((acc * self.ww + far * self.fw + (1 << 23)) >> 24) as u8
    }
}

fn box_blur_columns(src: &[u8], dst: &mut [u8], stride: usize, h: usize, bw: BoxWeights) {
    let r = bw.r as i64;
    let row = |y: i64| {
        let y = y.clamp(0, h as i64 - 1) as usize;
        &src[y * stride..(y + 1) * stride]
    };
    let mut acc = vec![0u32; stride];
    for k in -r..=r {
        for (a, &v) in acc.iter_mut().zip(row(k)) {
            *a += u32::from(v);
        }
    }
    for y in 0..h as i64 {
        if y > 0 {
            for ((a, &add), &sub) in acc.iter_mut().zip(row(y + r)).zip(row(y - r - 1)) {
                *a = *a + u32::from(add) - u32::from(sub);
            }
        }
        let out = &mut dst[y as usize * stride..(y as usize + 1) * stride];
        for (((o, &a), &left), &right) in out.iter_mut().zip(&acc).zip(row(y - r - 1)).zip(row(y + r + 1)) {
            *o = bw.out(a, u32::from(left) + u32::from(right));
        }
    }
}

fn box_radius_for_gaussian(radius: f32, passes: u32) -> f32 {
    let sigma2 = radius * radius / passes as f32;
    let big_l = (12.0 * f64::from(sigma2) + 1.0).sqrt() as f32;
    let l = ((f64::from(big_l) - 1.0) / 2.0).floor() as f32;
    let a = (2.0 * l + 1.0) * (l * (l + 1.0) - 3.0 * sigma2);
    let a = a / (6.0 * (sigma2 - (l + 1.0) * (l + 1.0)));
    l + a
}

/// One box-blur pass of PIL's `ImagingLineBoxBlur` along a row of RGB pixels, edges extended.
fn box_blur_line(src: &[u8], dst: &mut [u8], bw: BoxWeights, padded: &mut Vec<u8>) {
    let n = src.len() / 3;
    let r = bw.r;
    // Pad by r + 1 on both sides with the edge pixels, so every window is a plain slice.
    let pad = r + 1;
    padded.clear();
    for _ in 0..pad {
        padded.extend_from_slice(&src[..3]);
    }
    padded.extend_from_slice(src);
    for _ in 0..pad {
        padded.extend_from_slice(&src[(n - 1) * 3..]);
    }
    let taps = 2 * r + 1;
    let px = |i: usize| -> [u32; 3] {
        let p = &padded[i * 3..i * 3 + 3];
        [u32::from(p[0]), u32::from(p[1]), u32::from(p[2])]
    };
    // Window for output x covers padded indices x+1 ..= x+1+2r; the far pixels are x and x+2r+2.
    let mut acc = [0u32; 3];
    for i in 1..=taps {
        let p = px(i);
        for c in 0..3 {
            acc[c] += p[c];
        }
    }
    for (x, out) in dst.chunks_exact_mut(3).enumerate() {
        if x > 0 {
            let (add, sub) = (px(x + taps), px(x));
            for c in 0..3 {
                acc[c] = acc[c] + add[c] - sub[c];
            }
        }
        let (left, right) = (px(x), px(x + taps + 1));
        for c in 0..3 {
            out[c] = bw.out(acc[c], left[c] + right[c]);
        }
    }
}

/// ToTensor + Normalize as one table per channel: `(v / 255 - mean) / std` in float32.
#[derive(Debug, Clone)]
struct NormalizeLut {
    lut: [[f32; 256]; 3],
}

impl NormalizeLut {
    fn imagenet() -> Self {
        Self { lut: std::array::from_fn(|c| std::array::from_fn(|v| (v as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c])) }
    }

    fn to_chw(&self, img: &Rgb8) -> Vec<f32> {
        let mut out = vec![0.0; img.data.len()];
        self.write_chw(img, &mut out);
        out
    }

    fn write_chw(&self, img: &Rgb8, out: &mut [f32]) {
        let plane = img.w * img.h;
        let (r, rest) = out.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        for (i, p) in img.data.chunks_exact(3).enumerate() {
            r[i] = self.lut[0][usize::from(p[0])];
            g[i] = self.lut[1][usize::from(p[1])];
            b[i] = self.lut[2][usize::from(p[2])];
        }
    }
}

/// Evaluation view (k-NN, linear probe): shorter side resized to `resize` (bicubic), centre crop
/// of `crop`, normalised, CHW float32 — the reference's `Resize(resize, 3), CenterCrop(crop)`.
pub fn eval_transform(img: &RgbImage, resize: usize, crop: usize) -> Vec<f32> {
    let cropped = center_crop(&resize_shorter_side(img, resize), crop);
    NormalizeLut::imagenet().to_chw(&cropped)
}

/// torchvision's `Resize(int)`, bicubic: the shorter side becomes `shorter`, the longer
/// int(shorter * long / short), truncated.
fn resize_shorter_side(img: &RgbImage, shorter: usize) -> Rgb8 {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (nw, nh) = if w <= h {
        (shorter, (shorter as f64 * h as f64 / w as f64) as usize)
    } else {
        ((shorter as f64 * w as f64 / h as f64) as usize, shorter)
    };
    let (nw, nh) = (nw.max(1), nh.max(1));
    Rgb8 { w: nw, h: nh, data: crop_resize_bicubic(img.as_raw(), w, Rect { x0: 0, y0: 0, w, h }, nw, nh) }
}

/// The whole image with its shorter side resized to `shorter` (bicubic, the longer side
/// truncated as torchvision's `Resize(int)` does), then cut at the bottom and right to multiples
/// of `multiple`, as `visualize_attention.py` cuts its input to whole patches. Returns the RGB
/// pixels shown beside the maps and their normalised CHW float32 form.
pub fn whole_view(img: &RgbImage, shorter: usize, multiple: usize) -> (RgbImage, Vec<f32>) {
    let Rgb8 { w: nw, h: nh, data: resized } = resize_shorter_side(img, shorter);
    let m = multiple.max(1);
    let (cw, ch) = ((nw / m * m).max(m.min(nw)), (nh / m * m).max(m.min(nh)));
    let mut data = Vec::with_capacity(cw * ch * 3);
    for row in resized.chunks_exact(nw * 3).take(ch) {
        data.extend_from_slice(&row[..cw * 3]);
    }
    let cut = Rgb8 { w: cw, h: ch, data };
    let chw = NormalizeLut::imagenet().to_chw(&cut);
    let rgb = RgbImage::from_raw(cw as u32, ch as u32, cut.data).unwrap_or_else(|| RgbImage::new(cw as u32, ch as u32));
    (rgb, chw)
}

/// The whole image resized to `side` x `side` (bicubic, the aspect ratio not kept), normalised,
/// CHW float32: the reference's `Resize((imsize, imsize), 3)` of `eval_copy_detection.py`, which
/// crops nothing, so that a copy cropped from an image still shows everything it kept.
pub fn square_transform(img: &RgbImage, side: usize) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let side = side.max(1);
    let resized = crop_resize_bicubic(img.as_raw(), w, Rect { x0: 0, y0: 0, w, h }, side, side);
    NormalizeLut::imagenet().to_chw(&Rgb8 { w: side, h: side, data: resized })
}

/// Supervised training view (linear probe, supervised baseline): torchvision's
/// `RandomResizedCrop(size)` with its default scale (0.08, 1) and ratio, bicubic as the rest of
/// this module, then a horizontal flip with probability 1/2, normalised, CHW float32.
pub fn supervised_train_transform<R: Rng>(img: &RgbImage, size: usize, rng: &mut R) -> Vec<f32> {
    let src = Rgb8::from_image(img);
    let rect = random_resized_crop_params(src.w, src.h, (0.08, 1.0), RATIO, rng);
    let mut out = Rgb8 { w: size, h: size, data: crop_resize_bicubic(&src.data, src.w, rect, size, size) };
    if rng.random::<f64>() < 0.5 {
        hflip(&mut out);
    }
    NormalizeLut::imagenet().to_chw(&out)
}

/// torchvision's `CenterCrop`: zero padding when the image is smaller, offsets rounded half to even.
fn center_crop(img: &Rgb8, size: usize) -> Rgb8 {
    let offset = |len: usize| -> i64 {
        if size > len {
            -(((size - len) / 2) as i64)
        } else {
            ((len - size) as f64 / 2.0).round_ties_even() as i64
        }
    };
    let (top, left) = (offset(img.h), offset(img.w));
    let mut out = Rgb8 { w: size, h: size, data: vec![0; size * size * 3] };
    for y in 0..size {
        let sy = y as i64 + top;
        if sy < 0 || sy >= img.h as i64 {
            continue;
        }
        for x in 0..size {
            let sx = x as i64 + left;
            if sx < 0 || sx >= img.w as i64 {
                continue;
            }
            let s = (sy as usize * img.w + sx as usize) * 3;
            out.data[(y * size + x) * 3..(y * size + x) * 3 + 3].copy_from_slice(&img.data[s..s + 3]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn rng(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }

    fn gradient(w: usize, h: usize) -> Rgb8 {
        let data = (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                [(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, ((x + y) * 7 % 256) as u8]
            })
            .collect();
        Rgb8 { w, h, data }
    }

    fn cfg(global: usize, local: usize, n: usize) -> AugmentConfig {
        AugmentConfig {
            global_size: global,
            local_size: local,
            global_scale: (0.4, 1.0),
            local_scale: (0.05, 0.4),
            local_crops_number: n,
            blur_sigma: (0.1, 2.0),
            colour: ColourAugment::dino(),
        }
    }

    #[test]
    fn crops_come_out_in_order_with_their_sizes() {
        let aug = MultiCropAugment::new(cfg(32, 16, 6));
        let img = RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 100]));
        let crops = aug.apply(&img, &mut rng(1));
        assert_eq!(crops.len(), 8);
        assert_eq!(crops[0].len(), 3 * 32 * 32);
        assert_eq!(crops[1].len(), 3 * 32 * 32);
        assert!(crops[2..].iter().all(|c| c.len() == 3 * 16 * 16));
        assert!(crops.iter().flatten().all(|v| v.is_finite()));
        assert_eq!(crops, aug.apply(&img, &mut rng(1)), "same stream, same crops");
        assert_ne!(crops, aug.apply(&img, &mut rng(2)));
    }

    /// A uniform image in a colour of its own (not grey): a crop of it, flipped or not, is that
    /// colour again, so any other value comes from a colour step.
    fn coloured_crops(colour: ColourAugment, seeds: std::ops::Range<u64>) -> Vec<Vec<f32>> {
        let img = RgbImage::from_pixel(40, 40, image::Rgb([200, 30, 90]));
        let aug = MultiCropAugment::new(AugmentConfig { blur_sigma: (0.0, 0.0), colour, ..cfg(16, 8, 2) });
        seeds.flat_map(|s| aug.apply(&img, &mut rng(s))).collect()
    }

    #[test]
    fn colour_steps_follow_their_settings() {
        let off = ColourAugment { jitter_p: 0.0, jitter: [0.4, 0.4, 0.2, 0.1], grayscale_p: 0.0, solarize_p: 0.0 };
        let untouched = NormalizeLut::imagenet().to_chw(&Rgb8 { w: 1, h: 1, data: vec![200, 30, 90] });
        let is_untouched = |c: &Vec<f32>| c.chunks(c.len() / 3).zip(&untouched).all(|(plane, &v)| plane.iter().all(|&x| x == v));
        let crops = coloured_crops(off, 0..50);
        assert!(crops.iter().all(is_untouched), "no colour step may run at probability 0");
        // Zero strengths: the jitter runs and changes nothing.
        let crops = coloured_crops(ColourAugment { jitter_p: 1.0, jitter: [0.0; 4], ..off }, 0..50);
        assert!(crops.iter().all(is_untouched), "zero strengths are the identity");
        // Grey at probability 1: three equal planes in every crop.
        let crops = coloured_crops(ColourAugment { grayscale_p: 1.0, ..off }, 0..20);
        for c in &crops {
            let n = c.len() / 3;
            // Equal luma in the three planes, normalised by each channel's own mean and std.
            let grey = |i: usize, v: f32| v * IMAGENET_STD[i] + IMAGENET_MEAN[i];
            assert!((grey(0, c[0]) - grey(1, c[n])).abs() < 1e-6 && (grey(1, c[n]) - grey(2, c[2 * n])).abs() < 1e-6);
        }
        // The reference's colour steps change most crops of the same image.
        let changed = coloured_crops(ColourAugment::dino(), 0..50).iter().filter(|c| !is_untouched(c)).count();
        assert!(changed > 100, "{changed} of 200 crops changed by the reference's colour steps");
    }

    #[test]
    fn colour_jitter_ranges_are_torchvisions() {
        let j = ColorJitter::new(ColourAugment::dino().jitter);
        assert_eq!((j.brightness, j.contrast, j.saturation, j.hue), ((0.6, 1.4), (0.6, 1.4), (0.8, 1.2), (-0.1, 0.1)));
        let j = ColorJitter::new([1.5, 0.0, 1.0, 0.5]);
        assert_eq!((j.brightness, j.contrast, j.saturation, j.hue), ((0.0, 2.5), (1.0, 1.0), (0.0, 2.0), (-0.5, 0.5)));
    }

    #[test]
    fn flip_rate_is_about_one_half() {
        // Dark left, bright right; every later step keeps that order on a grey image except
        // solarization, which the first global crop never gets. Full-image crops isolate the flip.
        let img = RgbImage::from_fn(64, 64, |x, _| if x < 32 { image::Rgb([20; 3]) } else { image::Rgb([230; 3]) });
        let mut c = cfg(16, 8, 0);
        c.global_scale = (1.0, 1.0);
        let aug = MultiCropAugment::new(c);
        let mut r = rng(7);
        let n = 2000;
        let flipped = (0..n)
            .filter(|_| {
                let crop = &aug.apply(&img, &mut r)[0];
                let (mut left, mut right) = (0.0, 0.0);
                for y in 0..16 {
                    left += crop[y * 16];
                    right += crop[y * 16 + 15];
                }
                left > right
            })
            .count();
        let rate = flipped as f64 / n as f64;
        assert!((rate - 0.5).abs() < 0.04, "flip rate {rate}");
    }

    #[test]
    fn random_resized_crop_respects_scale_ratio_and_bounds() {
        let mut r = rng(3);
        let (w, h) = (200usize, 120usize);
        for _ in 0..2000 {
            let c = random_resized_crop_params(w, h, (0.08, 1.0), RATIO, &mut r);
            assert!(c.w >= 1 && c.h >= 1 && c.x0 + c.w <= w && c.y0 + c.h <= h, "{c:?}");
            let area = (c.w * c.h) as f64 / (w * h) as f64;
            let ratio = c.w as f64 / c.h as f64;
            if (c.w, c.h) != (w, h) {
                // Rounding to whole pixels moves area and ratio a little.
                assert!((0.07..=1.01).contains(&area), "area {area} {c:?}");
                assert!((0.70..=1.42).contains(&ratio), "ratio {ratio} {c:?}");
            }
        }
    }

    #[test]
    fn random_resized_crop_falls_back_to_a_clamped_centre_crop() {
        let mut r = rng(4);
        // No 3/4..4/3 crop of 0.4+ of a 1000x3 strip fits: centre crop 4x3 (ratio 4/3).
        let c = random_resized_crop_params(1000, 3, (0.4, 1.0), RATIO, &mut r);
        assert_eq!(c, Rect { x0: 498, y0: 0, w: 4, h: 3 });
        let c = random_resized_crop_params(3, 1000, (0.4, 1.0), RATIO, &mut r);
        assert_eq!(c, Rect { x0: 0, y0: 498, w: 3, h: 4 });
        let c = random_resized_crop_params(1, 1, (0.05, 0.4), RATIO, &mut r);
        assert_eq!(c, Rect { x0: 0, y0: 0, w: 1, h: 1 });
    }

    #[test]
    fn images_smaller_than_the_crop_and_extreme_strips_are_upscaled() {
        let aug = MultiCropAugment::new(cfg(32, 16, 2));
        for (w, h) in [(5, 7), (1, 1), (1000, 3), (3, 1000), (2, 2)] {
            let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 9]));
            let crops = aug.apply(&img, &mut rng(5));
            assert_eq!(crops[0].len(), 3 * 32 * 32, "{w}x{h}");
            assert_eq!(crops[3].len(), 3 * 16 * 16, "{w}x{h}");
            assert!(crops.iter().flatten().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn solarize_inverts_exactly_from_128() {
        let mut img = Rgb8 { w: 256, h: 1, data: (0..=255u8).flat_map(|v| [v, v, v]).collect() };
        solarize(&mut img, 128);
        for v in 0..=255u8 {
            let want = if v >= 128 { 255 - v } else { v };
            assert_eq!(img.data[usize::from(v) * 3], want);
        }
    }

    #[test]
    fn grayscale_gives_equal_channels_with_pil_luma() {
        let mut img = gradient(20, 10);
        grayscale(&mut img);
        assert!(img.data.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
        let mut one = Rgb8 { w: 1, h: 1, data: vec![255, 0, 0] };
        grayscale(&mut one);
        // PIL: L = R * 299/1000 + ..., rounded: 255 * 0.299 = 76.2
        assert_eq!(one.data, [76, 76, 76]);
    }

    #[test]
    fn blur_preserves_a_constant_image_and_the_mean_of_a_pattern() {
        for radius in [0.1, 0.7, 1.3, 2.0] {
            let mut c = Rgb8 { w: 17, h: 9, data: vec![131; 17 * 9 * 3] };
            gaussian_blur(&mut c, radius);
            assert!(c.data.iter().all(|&v| v == 131), "radius {radius}");
        }
        let mut img = gradient(32, 32);
        let before: f64 = img.data.iter().map(|&v| f64::from(v)).sum::<f64>() / img.data.len() as f64;
        gaussian_blur(&mut img, 2.0);
        let after: f64 = img.data.iter().map(|&v| f64::from(v)).sum::<f64>() / img.data.len() as f64;
        assert!((before - after).abs() < 1.5, "{before} vs {after}");
    }

    #[test]
    fn blur_spreads_an_impulse_symmetrically() {
        let mut img = Rgb8 { w: 21, h: 21, data: vec![0; 21 * 21 * 3] };
        img.data[(10 * 21 + 10) * 3..(10 * 21 + 10) * 3 + 3].fill(255);
        let mut impulse = img.clone();
        gaussian_blur(&mut impulse, 0.1);
        // Six passes each keep ~99.7% of the centre: 255 * 0.9967^6 is about 250.
        assert!(impulse.data[(10 * 21 + 10) * 3] >= 245, "radius 0.1 is almost the identity");
        gaussian_blur(&mut img, 1.0);
        let at = |x: usize, y: usize| img.data[(y * 21 + x) * 3];
        assert!(at(10, 10) < 255 && at(10, 10) > 0);
        assert_eq!(at(9, 10), at(11, 10));
        assert_eq!(at(10, 9), at(10, 11));
        assert!(at(9, 10) > at(8, 10));
    }

    #[test]
    fn column_blur_equals_row_blur_of_the_transpose() {
        let img = gradient(13, 9);
        let bw = BoxWeights::new(box_radius_for_gaussian(1.7, 3));
        let mut cols = vec![0u8; img.data.len()];
        box_blur_columns(&img.data, &mut cols, 13 * 3, 9, bw);
        let at = |d: &[u8], x: usize, y: usize, c: usize| d[(y * 13 + x) * 3 + c];
        let mut line = Vec::new();
        for x in 0..13 {
            let col: Vec<u8> = (0..9).flat_map(|y| (0..3).map(move |c| (y, c))).map(|(y, c)| at(&img.data, x, y, c)).collect();
            let mut out = vec![0u8; col.len()];
            box_blur_line(&col, &mut out, bw, &mut line);
            for y in 0..9 {
                for c in 0..3 {
                    assert_eq!(out[y * 3 + c], at(&cols, x, y, c), "x {x} y {y} c {c}");
                }
            }
        }
    }

    #[test]
    fn normalisation_of_known_pixels() {
        let lut = NormalizeLut::imagenet();
        let out = lut.to_chw(&Rgb8 { w: 2, h: 1, data: vec![255, 0, 128, 0, 255, 0] });
        let want = [
            (1.0 - 0.485) / 0.229,
            (0.0 - 0.485) / 0.229,
            (0.0 - 0.456) / 0.224,
            (1.0 - 0.456) / 0.224,
            (128.0 / 255.0 - 0.406) / 0.225,
            (0.0 - 0.406) / 0.225,
        ];
        for (o, w) in out.iter().zip(want) {
            assert!((o - w).abs() < 1e-5, "{o} vs {w}");
        }
    }

    #[test]
    fn colour_jitter_at_identity_factors_changes_nothing() {
        let img = gradient(23, 11);
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]] {
            let mut j = img.clone();
            JitterParams { order, brightness: 1.0, contrast: 1.0, saturation: 1.0, hue: 0.0 }.apply(&mut j);
            assert_eq!(j, img, "order {order:?}");
        }
    }

    #[test]
    fn colour_jitter_extremes_match_pil() {
        let img = gradient(16, 8);
        let mut b = img.clone();
        adjust_brightness(&mut b, 0.0);
        assert!(b.data.iter().all(|&v| v == 0));
        let mut b = Rgb8 { w: 1, h: 1, data: vec![100, 200, 3] };
        adjust_brightness(&mut b, 1.4);
        assert_eq!(b.data, [140, 255, 4], "truncating blend, clipped");
        let mut c = img.clone();
        adjust_contrast(&mut c, 0.0);
        assert!(c.data.windows(2).all(|w| w[0] == w[1]), "contrast 0 is the mean grey");
        let mut s = img.clone();
        adjust_saturation(&mut s, 0.0);
        let mut g = img.clone();
        grayscale(&mut g);
        assert_eq!(s, g, "saturation 0 is the grayscale image");
    }

    #[test]
    fn hue_shift_rotates_primaries() {
        let mut red = Rgb8 { w: 1, h: 1, data: vec![255, 0, 0] };
        adjust_hue(&mut red, 1.0 / 3.0);
        assert_eq!(red.data, [0, 255, 0]);
        let mut grey = Rgb8 { w: 1, h: 1, data: vec![90, 90, 90] };
        adjust_hue(&mut grey, 0.1);
        assert_eq!(grey.data, [90, 90, 90], "no hue, no change");
        // A tiny factor truncates to a zero shift, as numpy's cast does.
        let img = gradient(8, 8);
        let mut same = img.clone();
        adjust_hue(&mut same, 0.003);
        assert_eq!(same, img);
    }

    #[test]
    fn hsv_round_trip_is_close() {
        for (r, g, b) in [(10u8, 200u8, 30u8), (255, 128, 0), (1, 2, 3), (240, 240, 10)] {
            let (h, s, v) = rgb_to_hsv(r, g, b);
            let (r2, g2, b2) = hsv_to_rgb(h, s, v);
            for (a, b) in [(r, r2), (g, g2), (b, b2)] {
                assert!((i32::from(a) - i32::from(b)).abs() <= 3, "{:?} -> {:?}", (r, g, b), (r2, g2, b2));
            }
        }
    }

    #[test]
    fn hflip_mirrors_rows() {
        let mut img = Rgb8 { w: 3, h: 1, data: vec![1, 2, 3, 4, 5, 6, 7, 8, 9] };
        hflip(&mut img);
        assert_eq!(img.data, [7, 8, 9, 4, 5, 6, 1, 2, 3]);
    }

    #[test]
    fn eval_transform_resizes_short_side_and_centre_crops() {
        let img = RgbImage::from_fn(64, 32, |x, _| image::Rgb([if x < 32 { 0 } else { 255 }, 0, 0]));
        let out = eval_transform(&img, 16, 16);
        assert_eq!(out.len(), 3 * 16 * 16);
        // 64x32 -> 32x16, centre 16 columns span the edge at column 16.
        let red = |x: usize| out[8 * 16 + x];
        assert!(red(0) < red(15));
        let flat = RgbImage::from_pixel(10, 10, image::Rgb([255, 255, 255]));
        let out = eval_transform(&flat, 8, 8);
        assert!((out[0] - (1.0 - 0.485) / 0.229).abs() < 1e-5);
        // A crop larger than the resized image pads with black, as torchvision does.
        let out = eval_transform(&flat, 4, 6);
        assert!((out[0] - (0.0 - 0.485) / 0.229).abs() < 1e-5);
        assert!((out[2 * 6 + 2] - (1.0 - 0.485) / 0.229).abs() < 1e-5);
    }
}
