//! File to 8-bit RGB, whatever the file holds: the format is read from the content (a PNG named
//! `.jpg` still loads), EXIF orientation is applied as PIL's `exif_transpose` would, and every
//! colour model (grey, palette, alpha, CMYK, 16-bit) becomes RGB8 like PIL's `convert("RGB")`.
//!
//! Hostile files are refused before they cost anything: only regular files are read (a FIFO
//! named `x.jpg` would block the reader for good; it is opened without blocking and refused), an
//! image whose header declares more pixels than `DecodeLimits` allows is refused before its
//! pixels are allocated (a decompression bomb), and a JPEG without its end-of-image marker is
//! refused as truncated, as Pillow does (the decoder would fill the missing part with grey).

use crate::files::ShowPath;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {}: {reason}", path.shown())]
pub struct DecodeError {
    pub path: PathBuf,
    pub reason: String,
}

impl DecodeError {
    fn new(path: &Path, reason: impl Into<String>) -> Self {
        Self { path: path.to_path_buf(), reason: reason.into() }
    }
}

/// Pillow's `Image.MAX_IMAGE_PIXELS`, its decompression-bomb threshold: 256 MiB as 8-bit RGB,
/// about 9459 x 9459. Camera photos (up to ~60 Mpixel) pass; a header claiming 30000 x 30000
/// (2.7 GB of RGB) does not.
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 89_478_485;

/// Bytes per allowed pixel the decoder's own buffer may take: 16-bit RGBA, the widest model of
/// the enabled formats short of float TIFFs (which are then limited to half the pixels).
const MAX_BYTES_PER_PIXEL: u64 = 8;

/// How large an image may be once decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Most pixels (width x height); 0: no limit.
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self { max_pixels: DEFAULT_MAX_IMAGE_PIXELS }
    }
}

impl DecodeLimits {
    /// Most bytes of the decoded buffer (and of the file: compressed images are smaller than
    /// their pixels, so a bigger file is not an image this limit admits).
    fn max_bytes(&self) -> Option<u64> {
        (self.max_pixels > 0).then(|| self.max_pixels.saturating_mul(MAX_BYTES_PER_PIXEL))
    }

    fn image_limits(&self) -> image::Limits {
        let mut l = image::Limits::no_limits();
        l.max_alloc = self.max_bytes();
        l
    }
}

pub use crate::files::file_kind;

pub fn load_rgb(path: &Path) -> Result<RgbImage, DecodeError> {
    load_rgb_limited(path, &DecodeLimits::default())
}

/// `load_rgb` with explicit size limits.
pub fn load_rgb_limited(path: &Path, limits: &DecodeLimits) -> Result<RgbImage, DecodeError> {
    let bytes = read_regular(path, limits).map_err(|reason| DecodeError::new(path, reason))?;
    decode_rgb_limited(&bytes, limits).map_err(|reason| DecodeError::new(path, reason))
}

/// The bytes of a regular file (`files::open_regular`: a FIFO or a device cannot block it),
/// refused before reading when larger than any image the limits admit.
fn read_regular(path: &Path, limits: &DecodeLimits) -> Result<Vec<u8>, String> {
    let mut f = crate::files::open_regular(path).map_err(|e| e.to_string())?;
    let meta = f.metadata().map_err(|e| e.to_string())?;
    if let Some(max) = limits.max_bytes().filter(|m| meta.len() > *m) {
        return Err(format!("file of {} bytes is larger than the decoded-size limit ({max} bytes, max_image_pixels)", meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// Decodes an in-memory file; the error is a reason without a path, for callers that have one.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, String> {
    decode_rgb_limited(bytes, &DecodeLimits::default())
}

/// `decode_rgb` with explicit size limits.
pub fn decode_rgb_limited(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    let Some(format) = reader.format() else {
        return Err("not an image (content matches no supported format)".into());
    };
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err("truncated JPEG (no end-of-image marker after the last scan)".into());
    }
    if format == ImageFormat::Tiff {
        if let Some(rgb) = float_grey_tiff(bytes, limits)? {
            return Ok(rgb);
        }
    }
    reader.limits(limits.image_limits());
    let mut decoder = reader.into_decoder().map_err(|e| format!("corrupt or unsupported: {e}"))?;
    check_size(decoder.dimensions(), decoder.total_bytes(), limits)?;
    // A broken EXIF block must not cost the pixels: fall back to the stored orientation.
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| format!("corrupt or truncated: {e}"))?;
    img.apply_orientation(orientation);
    Ok(match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.into_rgb8(),
    })
}

/// A grey 32-bit float TIFF (Pillow's mode "F", which the image crate refuses as an unknown
/// colour type) as RGB8: values clamped to 0..1 and scaled to 0..255, as the image crate
/// converts its RGB float TIFFs. None for any other TIFF.
fn float_grey_tiff(bytes: &[u8], limits: &DecodeLimits) -> Result<Option<RgbImage>, String> {
    use tiff::decoder::{Decoder, DecodingResult};
    let Ok(mut d) = Decoder::new(Cursor::new(bytes)) else { return Ok(None) };
    if !matches!(d.colortype(), Ok(tiff::ColorType::Gray(32))) {
        return Ok(None);
    }
    let (w, h) = d.dimensions().map_err(|e| format!("corrupt TIFF: {e}"))?;
    check_size((w, h), u64::from(w) * u64::from(h) * 4, limits)?;
    let DecodingResult::F32(values) = d.read_image().map_err(|e| format!("corrupt or truncated: {e}"))? else {
        return Ok(None);
    };
    let to_u8 = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let rgb: Vec<u8> = values.iter().flat_map(|&v| [to_u8(v); 3]).collect();
    RgbImage::from_raw(w, h, rgb).map(Some).ok_or_else(|| "corrupt TIFF: fewer pixels than its size".to_string())
}

/// The header's size against the limits, before any pixel is allocated.
fn check_size((w, h): (u32, u32), total_bytes: u64, limits: &DecodeLimits) -> Result<(), String> {
    let pixels = u64::from(w) * u64::from(h);
    if limits.max_pixels > 0 && pixels > limits.max_pixels {
        return Err(format!("{w}x{h} = {pixels} pixels is over the limit of {} (max_image_pixels)", limits.max_pixels));
    }
    if let Some(max) = limits.max_bytes().filter(|m| total_bytes > *m) {
        return Err(format!("{w}x{h} decodes to {total_bytes} bytes, over the limit of {max} (max_image_pixels)"));
    }
    Ok(())
}

/// Whether a JPEG's last scan (SOS, `FF DA`) is followed by the end-of-image marker (`FF D9`).
/// Entropy-coded data never holds either (an `FF` there is stuffed as `FF 00`), and an EXIF
/// thumbnail's markers come before the main image's scans, so a file cut anywhere in its scans
/// fails this while trailing bytes after the marker do not.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    last_scan.is_some_and(|i| bytes[i..].windows(2).any(|w| w == [0xFF, 0xD9]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_bytes(img: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
        out
    }

    #[test]
    fn content_decides_the_format_not_the_extension() {
        let d = tempfile::tempdir().unwrap();
        let img = RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 40, y as u8 * 80, 7]));
        let p = d.path().join("really_a_png.jpg");
        std::fs::write(&p, png_bytes(&img)).unwrap();
        assert_eq!(load_rgb(&p).unwrap(), img);
    }

    #[test]
    fn float_tiffs_grey_and_rgb_are_converted_not_skipped() {
        // Issue 37: a grey float TIFF (Pillow's mode "F") was skipped as unsupported.
        use tiff::encoder::{colortype, TiffEncoder};
        let mut grey = Vec::new();
        let values = [0.0f32, 0.5, 1.0, 2.0, -1.0, f32::NAN];
        TiffEncoder::new(Cursor::new(&mut grey)).unwrap().write_image::<colortype::Gray32Float>(3, 2, &values).unwrap();
        let img = decode_rgb(&grey).unwrap();
        let firsts: Vec<u8> = img.pixels().map(|p| p.0[0]).collect();
        assert_eq!(firsts, [0, 128, 255, 255, 0, 0]);
        assert!(img.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]));
        let mut rgb = Vec::new();
        let px = [0.25f32, 0.5, 1.0, 0.0, 3.0, -2.0];
        TiffEncoder::new(Cursor::new(&mut rgb)).unwrap().write_image::<colortype::RGB32Float>(2, 1, &px).unwrap();
        assert_eq!(decode_rgb(&rgb).unwrap().into_raw(), [64, 128, 255, 0, 255, 0]);
    }

    #[test]
    fn bad_files_are_errors_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let full = png_bytes(&RgbImage::from_pixel(40, 40, image::Rgb([1, 2, 3])));
        let cases: [(&str, Vec<u8>, &str); 4] = [
            ("empty.png", Vec::new(), "empty file"),
            ("notes.jpg", b"hello, I am text, not an image".to_vec(), "not an image"),
            ("truncated.png", full[..full.len() / 2].to_vec(), "corrupt"),
            ("garbage.png", [&full[..16], &[0xAB; 64][..]].concat(), "corrupt"),
        ];
        for (name, bytes, why) in cases {
            let p = d.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            let e = load_rgb(&p).unwrap_err();
            assert_eq!(e.path, p);
            let msg = e.to_string();
            assert!(msg.contains(name) && msg.contains(why), "{name}: {msg}");
        }
        let e = load_rgb(&d.path().join("missing.png")).unwrap_err().to_string();
        assert!(e.contains("missing.png"), "{e}");
    }

    /// A PNG that is only a header declaring `w` x `h` RGB pixels and a few bytes of IDAT: what a
    /// decompression bomb looks like before its pixels.
    pub(crate) fn png_header(w: u32, h: u32) -> Vec<u8> {
        fn crc32(bytes: &[u8]) -> u32 {
            let mut c = !0u32;
            for b in bytes {
                c ^= u32::from(*b);
                for _ in 0..8 {
                    c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                }
            }
            !c
        }
        let chunk = |kind: &[u8], data: &[u8]| {
            let mut out = (data.len() as u32).to_be_bytes().to_vec();
            let body = [kind, data].concat();
            out.extend_from_slice(&body);
            out.extend_from_slice(&crc32(&body).to_be_bytes());
            out
        };
        let ihdr = [&w.to_be_bytes()[..], &h.to_be_bytes()[..], &[8, 2, 0, 0, 0]].concat();
        // zlib stream start (deflate, stored block header) without the data: truncated pixels.
        let idat = [0x78, 0x01, 0x00, 0x00, 0x80, 0xFF, 0x7F];
        [&b"\x89PNG\r\n\x1a\n"[..], &chunk(b"IHDR", &ihdr), &chunk(b"IDAT", &idat), &chunk(b"IEND", &[])].concat()
    }

    #[test]
    fn a_header_declaring_a_huge_image_is_refused_before_its_pixels_are_allocated() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("bomb.png");
        std::fs::write(&p, png_header(30000, 30000)).unwrap();
        let t0 = std::time::Instant::now();
        let e = load_rgb(&p).unwrap_err().to_string();
        assert!(e.contains("bomb.png") && e.contains("30000x30000") && e.contains("max_image_pixels"), "{e}");
        assert!(t0.elapsed() < std::time::Duration::from_secs(1), "{:?}", t0.elapsed());
        // The limit is a setting: a small one refuses a small image, 0 lifts it.
        let small = d.path().join("small.png");
        std::fs::write(&small, png_bytes(&RgbImage::from_pixel(40, 40, image::Rgb([1, 2, 3])))).unwrap();
        assert!(load_rgb_limited(&small, &DecodeLimits { max_pixels: 1000 }).unwrap_err().to_string().contains("1600 pixels"));
        assert!(load_rgb_limited(&small, &DecodeLimits { max_pixels: 0 }).is_ok());
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.jpg");
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let e = load_rgb(&p).unwrap_err().to_string();
        assert!(e.contains("x.jpg") && e.contains("FIFO"), "{e}");
    }

    #[test]
    fn a_truncated_jpeg_is_refused_as_pillow_does() {
        let img = RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 90]));
        let mut jpeg = Vec::new();
        img.write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).unwrap();
        assert!(decode_rgb(&jpeg).is_ok());
        // Trailing bytes after the end marker are fine (cameras append some).
        assert!(decode_rgb(&[&jpeg[..], b"trailer"].concat()).is_ok());
        let cut = &jpeg[..jpeg.len() * 2 / 3];
        let e = decode_rgb(cut).unwrap_err();
        assert!(e.contains("truncated JPEG"), "{e}");
    }
}
