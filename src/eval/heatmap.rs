//! Maps drawn as pictures: a [H, W] map in viridis (stretched to its own range, as matplotlib's
//! `imsave` draws it), a map laid over its image, a mask tinted on it, a [3, H, W] map in [0, 1]
//! as colours, and tiles side by side. The attention command's files and the TUI's overlay both
//! come from here, so what a person sees in the terminal is what the files hold.

use image::{Rgb, RgbImage};
use plotters::style::colors::colormaps::{ColorMap, ViridisRGB};
use tch::{Kind, Tensor};

/// Height the sheet's tiles are scaled up to (nearest): a 32 px map is unreadable at its size.
pub const SHEET_TILE: u32 = 160;

/// A [H, W] map as float32 rows, stretched to [0, 1].
fn stretched(map: &Tensor) -> (usize, usize, Vec<f32>) {
    let map = map.to_device(tch::Device::Cpu).to_kind(Kind::Float);
    let (lo, hi) = (map.min().double_value(&[]), map.max().double_value(&[]));
    let span = if hi > lo { hi - lo } else { 1.0 };
    values(&((map - lo) / span))
}

/// A [H, W] map's width, height and float32 rows as they are.
fn values(map: &Tensor) -> (usize, usize, Vec<f32>) {
    let map = map.to_device(tch::Device::Cpu).to_kind(Kind::Float);
    let (h, w) = map.size2().unwrap_or((0, 0));
    (w as usize, h as usize, Vec::<f32>::try_from(map.flatten(0, -1)).unwrap_or_default())
}

pub fn viridis(map: &Tensor) -> RgbImage {
    let (w, h, v) = stretched(map);
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let c = ViridisRGB.get_color(v[y as usize * w + x as usize]);
        Rgb([c.0, c.1, c.2])
    })
}

/// The image darkened where the mean map is low and tinted by viridis where it is high.
pub fn overlay(pixels: &RgbImage, mean: &Tensor) -> RgbImage {
    let (w, _, v) = stretched(mean);
    RgbImage::from_fn(pixels.width(), pixels.height(), |x, y| {
        let t = v.get(y as usize * w + x as usize).copied().unwrap_or(0.0);
        let c = ViridisRGB.get_color(t);
        let p = pixels.get_pixel(x, y).0;
        let mix = |a: u8, b: u8| (f32::from(a) * (0.35 + 0.35 * t) + f32::from(b) * 0.45).min(255.0) as u8;
        Rgb([mix(p[0], c.0), mix(p[1], c.1), mix(p[2], c.2)])
    })
}

/// Distinct colours for the heads' masks, as `display_instances` gives each instance its own.
pub fn mask_colour(head: usize) -> [u8; 3] {
    const COLOURS: [[u8; 3]; 6] = [[230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240]];
    COLOURS[head % COLOURS.len()]
}

/// The image with the kept patches tinted at half opacity (the reference's alpha 0.5).
pub fn blend_mask(pixels: &RgbImage, mask: &Tensor, colour: [u8; 3]) -> RgbImage {
    // The 0/1 values as they are: stretched, a mask keeping every patch would tint none.
    let (w, _, v) = values(mask);
    RgbImage::from_fn(pixels.width(), pixels.height(), |x, y| {
        let p = pixels.get_pixel(x, y).0;
        if v.get(y as usize * w + x as usize).copied().unwrap_or(0.0) > 0.5 {
            Rgb(std::array::from_fn(|c| ((u16::from(p[c]) + u16::from(colour[c])) / 2) as u8))
        } else {
            Rgb(p)
        }
    })
}

/// A [3, H, W] map in [0, 1] as an image.
pub fn rgb_of(map: &Tensor) -> RgbImage {
    let m = (map.to_device(tch::Device::Cpu).clamp(0.0, 1.0) * 255.0).round().to_kind(Kind::Uint8).permute([1, 2, 0]).contiguous();
    let (h, w) = (m.size()[0] as u32, m.size()[1] as u32);
    let bytes = Vec::<u8>::try_from(m.flatten(0, -1)).unwrap_or_default();
    RgbImage::from_raw(w, h, bytes).unwrap_or_else(|| RgbImage::new(w, h))
}

/// Tiles side by side, each scaled (nearest) to `SHEET_TILE` px high, 4 px apart.
pub fn sheet(tiles: &[&RgbImage]) -> RgbImage {
    let scaled: Vec<RgbImage> = tiles
        .iter()
        .map(|t| {
            let f = (SHEET_TILE as f64 / t.height().max(1) as f64).max(1.0);
            let (w, h) = ((t.width() as f64 * f).round() as u32, (t.height() as f64 * f).round() as u32);
            image::imageops::resize(*t, w.max(1), h.max(1), image::imageops::FilterType::Nearest)
        })
        .collect();
    let width = scaled.iter().map(|t| t.width() + 4).sum::<u32>().saturating_sub(4).max(1);
    let height = scaled.iter().map(RgbImage::height).max().unwrap_or(1);
    let mut out = RgbImage::from_pixel(width, height, Rgb([0, 0, 0]));
    let mut x = 0;
    for t in &scaled {
        image::imageops::replace(&mut out, t, i64::from(x), 0);
        x += t.width() + 4;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mask_keeping_every_patch_tints_every_pixel() {
        let pixels = RgbImage::from_pixel(4, 2, Rgb([0, 0, 0]));
        let all = blend_mask(&pixels, &Tensor::ones([2, 4], (Kind::Float, tch::Device::Cpu)), [200, 100, 50]);
        assert!(all.pixels().all(|p| p.0 == [100, 50, 25]));
        let none = blend_mask(&pixels, &Tensor::zeros([2, 4], (Kind::Float, tch::Device::Cpu)), [200, 100, 50]);
        assert!(none.pixels().all(|p| p.0 == [0, 0, 0]));
    }
}
