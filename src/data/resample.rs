//! Bicubic resize with the arithmetic of Pillow's `Image.resize(..., BICUBIC)` (which is what
//! torchvision runs on PIL images): a separable convolution whose support widens when shrinking
//! (antialiasing), fixed-point weights with 22 fractional bits, a horizontal pass first, and an
//! 8-bit intermediate image. Matching those details keeps our crops numerically close to the
//! reference's instead of merely similar.

const PRECISION_BITS: u32 = 32 - 8 - 2;
const BICUBIC_SUPPORT: f64 = 2.0;

fn bicubic(x: f64) -> f64 {
    // Keys' cubic with a = -0.5, as Pillow uses.
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// For each output position: the first input index, the number of taps, and `ksize` weights.
struct Coeffs {
    starts: Vec<usize>,
    lens: Vec<usize>,
    ksize: usize,
    weights: Vec<i32>,
}

fn coeffs(in_size: usize, out_size: usize) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = BICUBIC_SUPPORT * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut c =
        Coeffs { starts: Vec::with_capacity(out_size), lens: Vec::with_capacity(out_size), ksize, weights: vec![0; out_size * ksize] };
    let mut pre = vec![0.0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // `as` truncates toward zero like Pillow's `(int)` casts; negatives are clamped anyway.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let len = xmax.saturating_sub(xmin).min(ksize);
        let mut total = 0.0;
        for (x, p) in pre.iter_mut().enumerate().take(len) {
            let w = bicubic((x as f64 + xmin as f64 - center + 0.5) / filterscale);
            *p = w;
            total += w;
        }
        let k = &mut c.weights[xx * ksize..xx * ksize + len];
        for (dst, &w) in k.iter_mut().zip(&pre[..len]) {
            let w = if total != 0.0 { w / total } else { w };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            *dst = if w < 0.0 { (fixed - 0.5) as i32 } else { (fixed + 0.5) as i32 };
        }
        c.starts.push(xmin);
        c.lens.push(len);
    }
    c
}

#[inline(always)]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// A rectangle of an RGB8 image, `x0, y0, w, h` in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rect {
    pub x0: usize,
    pub y0: usize,
    pub w: usize,
    pub h: usize,
}

/// Crops `rect` out of the packed RGB8 image `src` (`src_w` pixels wide) and resizes it to
/// `out_w x out_h`, treating the crop as its own image (edges clamp at the crop, as PIL's
/// `crop().resize()` does).
pub(crate) fn crop_resize_bicubic(src: &[u8], src_w: usize, rect: Rect, out_w: usize, out_h: usize) -> Vec<u8> {
    let row = |y: usize| &src[((rect.y0 + y) * src_w + rect.x0) * 3..((rect.y0 + y) * src_w + rect.x0 + rect.w) * 3];
    let need_h = out_w != rect.w;
    let need_v = out_h != rect.h;
    // Horizontal pass over only the rows the vertical pass will read.
    let (first_row, mid_h, mid) = if need_h {
        let cv = need_v.then(|| coeffs(rect.h, out_h));
        let (first, last) = match &cv {
            Some(cv) => (cv.starts[0], cv.starts[out_h - 1] + cv.lens[out_h - 1]),
            None => (0, rect.h),
        };
        let ch = coeffs(rect.w, out_w);
        let mut mid = vec![0u8; (last - first) * out_w * 3];
        for (y, out_row) in (first..last).zip(mid.chunks_exact_mut(out_w * 3)) {
            horizontal_row(row(y), &ch, out_row);
        }
        (first, last - first, mid)
    } else {
        let mut mid = Vec::with_capacity(rect.w * rect.h * 3);
        for y in 0..rect.h {
            mid.extend_from_slice(row(y));
        }
        (0, rect.h, mid)
    };
    if !need_v {
        return mid;
    }
    let cv = coeffs(rect.h, out_h);
    let mut out = vec![0u8; out_w * out_h * 3];
    let stride = out_w * 3;
    let half = 1i32 << (PRECISION_BITS - 1);
    let mut acc = vec![0i32; stride];
    for (yy, out_row) in out.chunks_exact_mut(stride).enumerate() {
        acc.fill(half);
        let start = cv.starts[yy] - first_row;
        let k = &cv.weights[yy * cv.ksize..yy * cv.ksize + cv.lens[yy]];
        for (t, &w) in k.iter().enumerate() {
            let in_row = &mid[(start + t) * stride..(start + t + 1) * stride];
            for (a, &v) in acc.iter_mut().zip(in_row) {
                *a += i32::from(v) * w;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    debug_assert!(mid_h >= cv.starts[out_h - 1] + cv.lens[out_h - 1] - first_row);
    out
}

fn horizontal_row(input: &[u8], c: &Coeffs, out: &mut [u8]) {
    let half = 1i32 << (PRECISION_BITS - 1);
    for (xx, px) in out.chunks_exact_mut(3).enumerate() {
        let start = c.starts[xx];
        let len = c.lens[xx];
        let k = &c.weights[xx * c.ksize..xx * c.ksize + len];
        let taps = &input[start * 3..(start + len) * 3];
        let (mut r, mut g, mut b) = (half, half, half);
        for (&w, p) in k.iter().zip(taps.chunks_exact(3)) {
            r += i32::from(p[0]) * w;
            g += i32::from(p[1]) * w;
            b += i32::from(p[2]) * w;
        }
        px[0] = clip8(r);
        px[1] = clip8(g);
        px[2] = clip8(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(w: usize, h: usize) -> Rect {
        Rect { x0: 0, y0: 0, w, h }
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(10, 3), (3, 10), (224, 224), (500, 96), (7, 32)] {
            let c = coeffs(i, o);
            for xx in 0..o {
                let s: i32 = c.weights[xx * c.ksize..xx * c.ksize + c.lens[xx]].iter().sum();
                assert!((s - (1 << PRECISION_BITS)).abs() <= c.ksize as i32, "{i}->{o} at {xx}: {s}");
            }
        }
    }

    #[test]
    fn constant_image_stays_constant_at_any_scale() {
        let src = vec![77u8; 40 * 30 * 3];
        for (ow, oh) in [(12, 9), (96, 96), (40, 30), (7, 50)] {
            let out = crop_resize_bicubic(&src, 40, full(40, 30), ow, oh);
            assert_eq!(out.len(), ow * oh * 3);
            assert!(out.iter().all(|&v| v == 77), "{ow}x{oh}");
        }
    }

    #[test]
    fn same_size_is_an_exact_copy_of_the_crop() {
        let src: Vec<u8> = (0..10 * 8 * 3).map(|i| (i * 7 % 256) as u8).collect();
        let r = Rect { x0: 2, y0: 1, w: 5, h: 4 };
        let out = crop_resize_bicubic(&src, 10, r, 5, 4);
        for y in 0..4 {
            assert_eq!(&out[y * 15..y * 15 + 15], &src[((1 + y) * 10 + 2) * 3..((1 + y) * 10 + 7) * 3]);
        }
    }

    #[test]
    fn downscale_by_two_of_a_step_is_smooth_and_bounded() {
        // Left half black, right half white: the antialiased edge must stay within [0, 255] and be monotone.
        let mut src = vec![0u8; 16 * 4 * 3];
        for y in 0..4 {
            for x in 8..16 {
                src[(y * 16 + x) * 3..(y * 16 + x) * 3 + 3].fill(255);
            }
        }
        let out = crop_resize_bicubic(&src, 16, full(16, 4), 8, 2);
        let row: Vec<u8> = out[..24].chunks(3).map(|p| p[0]).collect();
        assert!(row.windows(2).all(|w| w[0] <= w[1]), "{row:?}");
        assert_eq!((row[0], row[7]), (0, 255));
    }
}
