//! File to 8-bit RGB, whatever the file holds: the format is read from the content (a PNG named
//! `.jpg` still loads), EXIF orientation is applied as PIL's `exif_transpose` would, and every
//! colour model (grey, palette, alpha, CMYK, 16-bit) becomes RGB8 like PIL's `convert("RGB")`.

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use std::io::Cursor;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {path}: {reason}")]
pub struct DecodeError {
    pub path: PathBuf,
    pub reason: String,
}

impl DecodeError {
    fn new(path: &Path, reason: impl Into<String>) -> Self {
        Self { path: path.to_path_buf(), reason: reason.into() }
    }
}

pub fn load_rgb(path: &Path) -> Result<RgbImage, DecodeError> {
    let bytes = std::fs::read(path).map_err(|e| DecodeError::new(path, e.to_string()))?;
    decode_rgb(&bytes).map_err(|reason| DecodeError::new(path, reason))
}

/// Decodes an in-memory file; the error is a reason without a path, for callers that have one.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| e.to_string())?;
    if reader.format().is_none() {
        return Err("not an image (content matches no supported format)".into());
    }
    let mut decoder = reader.into_decoder().map_err(|e| format!("corrupt or unsupported: {e}"))?;
    // A broken EXIF block must not cost the pixels: fall back to the stored orientation.
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| format!("corrupt or truncated: {e}"))?;
    img.apply_orientation(orientation);
    Ok(match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.into_rgb8(),
    })
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
}
