//! Loader throughput (images per second) for the two settings of docs/benchmarks.md (Data loader):
//! (a) 32/16 px crops, 2 + 6, on cifar-vehicles/pretext (demo data when it is absent) and
//! (b) 224/96 px crops, 2 + 8, on 200 generated photo-like 500x375 JPEGs.
//!
//! `cargo run --release --example bench_loader [-- --images N]`

use dino_tui::data::{write_demo_dataset, AugmentConfig, ColourAugment, DataLayout, LoaderConfig, MultiCropLoader};
use image::codecs::jpeg::JpegEncoder;
use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let images: usize =
        args.iter().position(|a| a == "--images").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(2048);
    let tmp = tempfile::tempdir()?;

    // The shared data beside the repository, wherever it was cloned.
    let cifar = &Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/cifar-vehicles");
    let (small_files, small_name) = if cifar.join("pretext").is_dir() {
        (DataLayout::discover(cifar)?.pretext().files.clone(), "cifar-vehicles/pretext (32x32 JPEG)")
    } else {
        let dir = tmp.path().join("demo");
        write_demo_dataset(&dir, 400, 0, 32)?;
        (DataLayout::discover(&dir)?.pretext().files.clone(), "demo data (32x32 PNG/JPEG)")
    };
    let small = AugmentConfig {
        global_size: 32,
        local_size: 16,
        global_scale: (0.4, 1.0),
        local_scale: (0.05, 0.4),
        local_crops_number: 6,
        blur_sigma: (0.1, 2.0),
        colour: ColourAugment::dino(),
    };
    let small_files: Vec<PathBuf> = small_files.into_iter().take(images).collect();

    let photo_dir = tmp.path().join("photos");
    let photos = write_photos(&photo_dir, 200)?;
    let large = AugmentConfig {
        global_size: 224,
        local_size: 96,
        global_scale: (0.4, 1.0),
        local_scale: (0.05, 0.4),
        local_crops_number: 8,
        blur_sigma: (0.1, 2.0),
        colour: ColourAugment::dino(),
    };

    println!("(a) 32/16 px, 2+6 crops, {} images of {small_name}, batch 64", small_files.len());
    for workers in [1, 2] {
        report(workers, measure(&small_files, &small, 64, workers)?);
    }
    println!("(b) 224/96 px, 2+8 crops, {} photo-like 500x375 JPEGs (q90), batch 16", photos.len());
    for workers in [1, 2] {
        report(workers, measure(&photos, &large, 16, workers)?);
    }
    Ok(())
}

fn report(workers: usize, (wall, cpu): (f64, f64)) {
    println!("  {workers} worker(s): {wall:8.1} images/s wall ({:.1} per worker), {cpu:8.1} images per CPU-second", wall / workers as f64);
}

/// User + system CPU time of the whole process, so a per-core figure survives a busy machine.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// One warm-up batch, then a timed pass over the rest of the epoch: (images per wall-clock
/// second, images per CPU-second of the process).
fn measure(files: &[PathBuf], aug: &AugmentConfig, batch_size: usize, workers: usize) -> anyhow::Result<(f64, f64)> {
    let config = LoaderConfig {
        batch_size,
        num_workers: workers,
        seed: 0,
        epoch: 0,
        start_batch: 0,
        prefetch: 0,
        shard: Default::default(),
        decode_limits: Default::default(),
    };
    let mut loader = MultiCropLoader::new(files.to_vec(), aug.clone(), config)?;
    loader.next_batch().transpose()?;
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    let mut n = 0;
    for b in loader.iter() {
        n += b?.indices.len();
    }
    let (wall, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    Ok((n as f64 / wall, n as f64 / cpu))
}

/// Photo-like test images: smooth gradients, shapes, fine noise, saved as JPEG quality 90, so the
/// decoder and the resampler see realistic entropy rather than flat colour.
fn write_photos(dir: &Path, n: usize) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut files = Vec::with_capacity(n);
    for i in 0..n {
        let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
        let (w, h) = if i % 4 == 3 { (375, 500) } else { (500, 375) };
        let c0: [f32; 3] = std::array::from_fn(|_| rng.random_range(0.0..255.0));
        let c1: [f32; 3] = std::array::from_fn(|_| rng.random_range(0.0..255.0));
        let shapes: Vec<(f32, f32, f32, f32, [f32; 3])> = (0..rng.random_range(4..12))
            .map(|_| {
                (
                    rng.random_range(0.0..w as f32),
                    rng.random_range(0.0..h as f32),
                    rng.random_range(10.0..120.0),
                    rng.random_range(10.0..120.0),
                    std::array::from_fn(|_| rng.random_range(0.0..255.0)),
                )
            })
            .collect();
        let img = RgbImage::from_fn(w, h, |x, y| {
            let t = (x as f32 / w as f32 + y as f32 / h as f32) / 2.0;
            let mut c: [f32; 3] = std::array::from_fn(|k| c0[k] * (1.0 - t) + c1[k] * t);
            for &(sx, sy, rx, ry, col) in &shapes {
                let d = ((x as f32 - sx) / rx).powi(2) + ((y as f32 - sy) / ry).powi(2);
                if d < 1.0 {
                    for k in 0..3 {
                        c[k] = col[k] * (1.0 - 0.5 * d) + c[k] * 0.5 * d;
                    }
                }
            }
            let texture = 12.0 * ((x as f32 * 0.31).sin() * (y as f32 * 0.17).cos());
            Rgb(c.map(|v| (v + texture + rng.random_range(-10.0..10.0)).clamp(0.0, 255.0) as u8))
        });
        let path = dir.join(format!("photo_{i:04}.jpg"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        JpegEncoder::new_with_quality(&mut out, 90).encode_image(&img)?;
        files.push(path);
    }
    Ok(files)
}
