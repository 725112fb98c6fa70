//! End-to-end tests of the data pipeline through its public API: odd image files, unreadable
//! files in a training set, loader determinism and resume, and the demo generator.
// Test code (the lints of clippy.toml cover #[test] functions, not their helpers here): a failed
// assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use dino_tui::data::{load_rgb, write_demo_dataset, AugmentConfig, ColourAugment, DataError, DataLayout, LoaderConfig, MultiCropLoader};
use image::{DynamicImage, ImageBuffer, ImageFormat, Rgb, RgbImage, Rgba};
use std::io::Cursor;
use std::path::{Path, PathBuf};

const CIFAR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/cifar-vehicles");

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// An indexed-colour PNG, written by hand because the `image` encoder only writes direct colour:
/// PLTE with the given colours, 8-bit indices, zlib "stored" blocks (no compression needed).
fn palette_png(w: u32, h: u32, palette: &[[u8; 3]], index: impl Fn(u32, u32) -> u8) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0); // filter: none
        raw.extend((0..w).map(|x| index(x, y)));
    }
    let mut z = vec![0x78, 0x01];
    z.push(1); // final stored block
    z.extend_from_slice(&(raw.len() as u16).to_le_bytes());
    z.extend_from_slice(&(!(raw.len() as u16)).to_le_bytes());
    z.extend_from_slice(&raw);
    let (mut a, mut b) = (1u32, 0u32);
    for &v in &raw {
        a = (a + u32::from(v)) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 3, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"PLTE", &palette.concat());
    png_chunk(&mut out, b"IDAT", &z);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A JPEG with an EXIF APP1 segment holding only the Orientation tag, inserted after SOI.
fn jpeg_with_orientation(img: &RgbImage, orientation: u16) -> Vec<u8> {
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95).encode_image(img).unwrap();
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec(); // big-endian TIFF, IFD at 8
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]); // value padding
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), format).unwrap();
    out
}

fn close(a: &Rgb<u8>, b: [u8; 3], tol: i32) -> bool {
    a.0.iter().zip(b).all(|(&x, y)| (i32::from(x) - i32::from(y)).abs() <= tol)
}

fn pattern(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([(x * 30) as u8, (y * 40) as u8, 200]))
}

#[test]
fn odd_image_kinds_all_become_rgb8() {
    let d = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: Vec<u8>| -> PathBuf {
        let p = d.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let rgb = pattern(6, 4);

    let gray = DynamicImage::ImageLuma8(ImageBuffer::from_fn(6, 4, |x, _| image::Luma([x as u8 * 40])));
    let g = load_rgb(&write("gray.png", encode(&gray, ImageFormat::Png))).unwrap();
    assert_eq!(g.get_pixel(3, 1), &Rgb([120, 120, 120]));

    let pal = palette_png(4, 2, &[[255, 0, 0], [0, 0, 255]], |x, _| u8::from(x >= 2));
    let p = load_rgb(&write("palette.png", pal)).unwrap();
    assert_eq!((p.get_pixel(0, 0), p.get_pixel(3, 1)), (&Rgb([255, 0, 0]), &Rgb([0, 0, 255])));

    let rgba = DynamicImage::ImageRgba8(ImageBuffer::from_fn(6, 4, |x, _| Rgba([10, 20, 30, (x * 40) as u8])));
    let a = load_rgb(&write("alpha.png", encode(&rgba, ImageFormat::Png))).unwrap();
    assert_eq!(a.get_pixel(0, 0), &Rgb([10, 20, 30]), "alpha dropped like convert('RGB')");

    let deep = DynamicImage::ImageRgb16(ImageBuffer::from_fn(6, 4, |x, _| Rgb([65535, (x * 13107) as u16, 0])));
    let p16 = load_rgb(&write("deep.png", encode(&deep, ImageFormat::Png))).unwrap();
    assert_eq!(p16.get_pixel(5, 0), &Rgb([255, 255, 0]));
    assert_eq!(p16.get_pixel(1, 0), &Rgb([255, 51, 0]));

    for (name, format) in [("lossless.webp", ImageFormat::WebP), ("image.bmp", ImageFormat::Bmp), ("image.tiff", ImageFormat::Tiff)] {
        let out = load_rgb(&write(name, encode(&DynamicImage::ImageRgb8(rgb.clone()), format))).unwrap();
        assert_eq!(out, rgb, "{name}");
    }

    let gif_src = RgbImage::from_fn(8, 8, |x, _| if x < 4 { Rgb([255, 0, 0]) } else { Rgb([0, 255, 0]) });
    let gif =
        load_rgb(&write("anim.gif", encode(&DynamicImage::ImageRgba8(DynamicImage::ImageRgb8(gif_src).to_rgba8()), ImageFormat::Gif)))
            .unwrap();
    assert!(close(gif.get_pixel(1, 1), [255, 0, 0], 8) && close(gif.get_pixel(6, 6), [0, 255, 0], 8));

    let jpg = load_rgb(&write("plain.jpg", encode(&DynamicImage::ImageRgb8(pattern(16, 16)), ImageFormat::Jpeg))).unwrap();
    assert_eq!(jpg.dimensions(), (16, 16));
    // CMYK JPEG: neither the `image` encoder nor anything else in the dependency tree writes
    // one, so that decoding path (zune-jpeg's CMYK conversion) is not exercised here.
}

#[test]
fn exif_orientation_is_applied() {
    let d = tempfile::tempdir().unwrap();
    // 32 wide, 16 high: red left half, blue right half.
    let img = RgbImage::from_fn(32, 16, |x, _| if x < 16 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) });
    let p = d.path().join("rot.jpg");
    std::fs::write(&p, jpeg_with_orientation(&img, 6)).unwrap();
    let out = load_rgb(&p).unwrap();
    // Orientation 6: rotate 90 degrees clockwise to display; the left (red) half goes to the top.
    assert_eq!(out.dimensions(), (16, 32));
    assert!(close(out.get_pixel(8, 4), [255, 0, 0], 40), "{:?}", out.get_pixel(8, 4));
    assert!(close(out.get_pixel(8, 28), [0, 0, 255], 40), "{:?}", out.get_pixel(8, 28));
    std::fs::write(&p, jpeg_with_orientation(&img, 3)).unwrap();
    let out = load_rgb(&p).unwrap();
    assert_eq!(out.dimensions(), (32, 16));
    assert!(close(out.get_pixel(4, 8), [0, 0, 255], 40), "180 degrees puts blue on the left");
}

fn small_aug() -> AugmentConfig {
    AugmentConfig {
        global_size: 16,
        local_size: 8,
        global_scale: (0.4, 1.0),
        local_scale: (0.05, 0.4),
        local_crops_number: 2,
        blur_sigma: (0.1, 2.0),
        colour: ColourAugment::dino(),
    }
}

fn loader_cfg(batch_size: usize, workers: usize, epoch: u64, start_batch: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size,
        num_workers: workers,
        seed: 5,
        epoch,
        start_batch,
        prefetch: 0,
        shard: Default::default(),
        decode_limits: Default::default(),
    }
}

fn demo(dir: &Path, per_class: usize) -> DataLayout {
    write_demo_dataset(dir, per_class, 3, 16).unwrap();
    DataLayout::discover(dir).unwrap()
}

fn flat(t: &tch::Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
}

#[test]
fn unreadable_files_are_skipped_counted_and_replaced() {
    let d = tempfile::tempdir().unwrap();
    let layout = demo(d.path(), 4);
    let mut files = layout.pretext().files.clone();
    let bad_dir = d.path().join("bad");
    std::fs::create_dir_all(&bad_dir).unwrap();
    let good = std::fs::read(&files[0]).unwrap();
    for (name, bytes) in
        [("empty.png", Vec::new()), ("text.jpg", b"not an image at all".to_vec()), ("truncated.png", good[..good.len() / 3].to_vec())]
    {
        let p = bad_dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        files.push(p);
    }
    let n = files.len();
    let bad: Vec<usize> = (n - 3..n).collect();
    let run = |workers| {
        let mut l = MultiCropLoader::new(files.clone(), small_aug(), loader_cfg(4, workers, 0, 0)).unwrap();
        let batches: Vec<_> = l.iter().map(|b| b.unwrap()).collect();
        (batches, l.skipped_total())
    };
    let (batches, total) = run(2);
    assert_eq!(batches.len(), n / 4);
    let skipped: Vec<_> = batches.iter().flat_map(|b| b.skipped.clone()).collect();
    assert_eq!(total, skipped.len());
    // Every bad file lies somewhere in the epoch's order unless it fell in the dropped tail.
    assert!(!skipped.is_empty() && skipped.iter().all(|s| bad.contains(&s.index)));
    for s in &skipped {
        assert!(s.path.starts_with(&bad_dir) && !s.reason.is_empty());
    }
    for b in &batches {
        assert_eq!(b.indices.len(), 4, "batch stays full");
        assert!(b.indices.iter().all(|i| !bad.contains(i)));
        assert_eq!(b.crops[0].size(), [4, 3, 16, 16]);
    }
    let (again, _) = run(0);
    for (a, b) in batches.iter().zip(&again) {
        assert_eq!((&a.indices, &a.skipped), (&b.indices, &b.skipped), "deterministic replacement");
        assert_eq!(flat(&a.crops[2]), flat(&b.crops[2]));
    }
}

#[test]
fn all_unreadable_is_an_error_not_a_hang() {
    let d = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = (0..6)
        .map(|i| {
            let p = d.path().join(format!("{i}.jpg"));
            std::fs::write(&p, b"junk").unwrap();
            p
        })
        .collect();
    for workers in [0, 2] {
        let mut l = MultiCropLoader::new(files.clone(), small_aug(), loader_cfg(2, workers, 0, 0)).unwrap();
        let e = l.next_batch().unwrap().unwrap_err();
        assert!(matches!(e, DataError::AllUnreadable { count: 6, .. }), "{e}");
        assert!(l.next_batch().is_none(), "the loader stops after an error");
    }
}

#[test]
fn same_epoch_same_batches_other_epoch_other_order() {
    let d = tempfile::tempdir().unwrap();
    let files = demo(d.path(), 4).pretext().files.clone();
    let epoch = |e, workers| -> Vec<(Vec<usize>, Vec<f32>)> {
        MultiCropLoader::new(files.clone(), small_aug(), loader_cfg(5, workers, e, 0))
            .unwrap()
            .map(|b| b.unwrap())
            .map(|b| (b.indices.clone(), flat(&b.crops[1])))
            .collect()
    };
    let e0 = epoch(0, 1);
    assert_eq!(e0.len(), 4);
    assert_eq!(e0, epoch(0, 2));
    let e1 = epoch(1, 2);
    let order = |e: &[(Vec<usize>, Vec<f32>)]| e.iter().flat_map(|b| b.0.clone()).collect::<Vec<_>>();
    assert_ne!(order(&e0), order(&e1));
}

#[test]
fn resume_at_start_batch_gives_the_tail_of_the_epoch() {
    let d = tempfile::tempdir().unwrap();
    let files = demo(d.path(), 4).pretext().files.clone();
    let all: Vec<_> = MultiCropLoader::new(files.clone(), small_aug(), loader_cfg(3, 2, 7, 0)).unwrap().map(|b| b.unwrap()).collect();
    let tail: Vec<_> = MultiCropLoader::new(files, small_aug(), loader_cfg(3, 2, 7, 4)).unwrap().map(|b| b.unwrap()).collect();
    assert_eq!(all.len(), 20 / 3);
    assert_eq!(tail.len(), all.len() - 4);
    for (a, b) in all[4..].iter().zip(&tail) {
        assert_eq!(a.batch_index, b.batch_index);
        assert_eq!(a.indices, b.indices);
        for (x, y) in a.crops.iter().zip(&b.crops) {
            assert_eq!(flat(x), flat(y));
        }
    }
}

#[test]
fn demo_generator_writes_decodable_images_in_the_project_layout() {
    let d = tempfile::tempdir().unwrap();
    let s = write_demo_dataset(d.path(), 4, 9, 24).unwrap();
    assert!(!s.reused);
    assert_eq!((s.train, s.val, s.pretext, s.classes.len()), (20, 5, 20, 5));
    let l = DataLayout::discover(d.path()).unwrap();
    assert_eq!(l.train().unwrap().classes, s.classes);
    assert_eq!(l.train().unwrap().class_counts(), [4; 5]);
    assert_eq!(l.val().unwrap().class_counts(), [1; 5]);
    assert_eq!(l.pretext().len(), 20);
    let all: Vec<&PathBuf> = [l.pretext(), l.train().unwrap(), l.val().unwrap()].iter().flat_map(|s| s.files.iter()).collect();
    assert!(all.iter().any(|p| p.extension().unwrap() == "png") && all.iter().any(|p| p.extension().unwrap() == "jpg"));
    for p in &all {
        assert_eq!(load_rgb(p).unwrap().dimensions(), (24, 24), "{}", p.display());
    }
    // Pretext images are new draws, not copies of the labeled ones.
    let train_bytes: Vec<Vec<u8>> = l.train().unwrap().files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(l.pretext().files.iter().all(|p| !train_bytes.contains(&std::fs::read(p).unwrap())));
    // Same parameters: reused, untouched. Same seed elsewhere: identical bytes.
    assert!(write_demo_dataset(d.path(), 4, 9, 24).unwrap().reused);
    let other = tempfile::tempdir().unwrap();
    write_demo_dataset(other.path(), 4, 9, 24).unwrap();
    let rel = all[7].strip_prefix(d.path()).unwrap();
    assert_eq!(std::fs::read(all[7]).unwrap(), std::fs::read(other.path().join(rel)).unwrap());
    // Different parameters regenerate.
    let s2 = write_demo_dataset(d.path(), 2, 9, 24).unwrap();
    assert!(!s2.reused);
    assert_eq!(DataLayout::discover(d.path()).unwrap().pretext().len(), 10);
}

#[test]
fn cifar_vehicles_loads_if_present() {
    let root = Path::new(CIFAR);
    if !root.is_dir() {
        common::prerequisite(false, &format!("the shared data {CIFAR} is not there"));
        return;
    }
    let l = DataLayout::discover(root).unwrap();
    assert_eq!(l.pretext().len(), 4000);
    assert_eq!(l.train().unwrap().classes, ["airplane", "automobile", "ship", "truck"]);
    assert_eq!(l.val().unwrap().class_counts(), [250; 4]);
    let aug = AugmentConfig {
        global_size: 32,
        local_size: 16,
        global_scale: (0.4, 1.0),
        local_scale: (0.05, 0.4),
        local_crops_number: 6,
        blur_sigma: (0.1, 2.0),
        colour: ColourAugment::dino(),
    };
    let mut loader = MultiCropLoader::new(l.pretext().files.clone(), aug, loader_cfg(64, 2, 0, 0)).unwrap();
    assert_eq!(loader.batches_per_epoch(), 62);
    let b = loader.next_batch().unwrap().unwrap();
    assert_eq!(b.crops.len(), 8);
    assert_eq!(b.crops[0].size(), [64, 3, 32, 32]);
    assert_eq!(b.crops[7].size(), [64, 3, 16, 16]);
    assert!(b.skipped.is_empty());
}
