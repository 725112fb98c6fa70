//! The multi-crop loader: worker threads decode and augment whole batches ahead of the trainer,
//! at most `prefetch` batches at a time, and hand them over in order.
//!
//! Every random choice is a pure function of `(seed, epoch, position in the epoch)`: the epoch's
//! permutation, each sample's augmentation stream, and which sample replaces an unreadable file.
//! Results therefore do not depend on the number of workers or their timing, and a run resumed
//! at `start_batch` sees exactly the batches the uninterrupted run would have seen.

use super::augment::{AugmentConfig, MultiCropAugment};
use super::decode::{load_rgb_limited, DecodeLimits};
use super::rng::rng_for;
use super::DataError;
use crate::files::ShowPath;
use crossbeam_channel::{Receiver, Sender};
use rand::seq::SliceRandom;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tch::Tensor;

/// Separates the permutation stream from the per-sample streams seeded by the same `(seed, epoch)`.
const PERMUTATION_STREAM: u64 = u64::MAX;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// Decoding threads; 0 decodes on the caller's thread inside `next_batch`.
    pub num_workers: usize,
    pub seed: u64,
    pub epoch: u64,
    /// First batch of the epoch to produce (resume mid-epoch).
    pub start_batch: usize,
    /// Ready batches held ahead of the trainer; 0 picks twice the number of workers.
    pub prefetch: usize,
    /// This process's share of the epoch in data-parallel training.
    pub shard: Shard,
    /// Largest image decoded; bigger ones are skipped like unreadable files.
    pub decode_limits: DecodeLimits,
}

/// The reference's `DistributedSampler`: the epoch's order (the same on every rank), padded by
/// wrapping around to a multiple of `world`, dealt out rank-strided, so rank `r` takes global
/// positions `r, r + world, ...`. Augmentation is seeded by the global position, so the ranks'
/// batches together are exactly the single-process batch `world` times as large.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub world: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Self { rank: 0, world: 1 }
    }
}

impl Shard {
    /// Samples this rank sees per epoch.
    pub fn len(&self, num_files: usize) -> usize {
        num_files.div_ceil(self.world.max(1))
    }

    pub fn is_empty(&self, num_files: usize) -> bool {
        self.len(num_files) == 0
    }

    /// Position in the whole epoch's (padded) order of this rank's `local` sample.
    pub fn global_position(&self, local: usize) -> usize {
        local * self.world.max(1) + self.rank
    }
}

/// An image that could not be used and was replaced, for the trainer's event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    pub path: PathBuf,
    /// Index of the file in the loader's file list.
    pub index: usize,
    pub reason: String,
}

#[derive(Debug)]
pub struct Batch {
    /// Position of this batch in its epoch.
    pub batch_index: usize,
    /// One tensor per crop, `[global1, global2, local1..]`, each `[B, 3, H, W]` float32.
    pub crops: Vec<Tensor>,
    /// File-list index of each sample actually used (replacements included).
    pub indices: Vec<usize>,
    pub skipped: Vec<SkippedFile>,
}

type BatchResult = Result<Batch, DataError>;

struct Shared {
    files: Vec<PathBuf>,
    permutation: Vec<usize>,
    augment: MultiCropAugment,
    config: LoaderConfig,
    /// Why each known-unreadable file failed; lets later probes skip the decode without
    /// changing any result (a file that failed once is assumed to fail again).
    unreadable: Mutex<HashMap<usize, String>>,
    unreadable_count: AtomicUsize,
    stop: AtomicBool,
}

pub struct MultiCropLoader {
    shared: Arc<Shared>,
    tasks: Option<Sender<usize>>,
    results: Receiver<(usize, BatchResult)>,
    workers: Vec<JoinHandle<()>>,
    next: usize,
    issued: usize,
    end: usize,
    window: usize,
    ready: BTreeMap<usize, BatchResult>,
    failed: bool,
    skipped_total: usize,
}

impl MultiCropLoader {
    pub fn new(files: Vec<PathBuf>, augment: AugmentConfig, config: LoaderConfig) -> Result<Self, DataError> {
        if config.batch_size == 0 {
            return Err(DataError::Invalid("batch size must be at least 1".into()));
        }
        if files.len() < config.batch_size {
            return Err(DataError::TooFewImages { images: files.len(), batch_size: config.batch_size });
        }
        let end = Self::batches_for(config.shard.len(files.len()), config.batch_size);
        if config.start_batch > end {
            return Err(DataError::Invalid(format!("start batch {} is past the end of the epoch ({end} batches)", config.start_batch)));
        }
        let permutation = epoch_permutation(files.len(), config.seed, config.epoch);
        let window = if config.prefetch == 0 { (2 * config.num_workers).max(1) } else { config.prefetch };
        let shared = Arc::new(Shared {
            files,
            permutation,
            augment: MultiCropAugment::new(augment),
            config: config.clone(),
            unreadable: Mutex::new(HashMap::new()),
            unreadable_count: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let (task_tx, task_rx) = crossbeam_channel::unbounded::<usize>();
        // Unbounded is safe: at most `window` batches are ever issued and not yet returned.
        let (result_tx, result_rx) = crossbeam_channel::unbounded();
        let mut workers = Vec::with_capacity(config.num_workers);
        for i in 0..config.num_workers {
            let (shared, tasks, results) = (Arc::clone(&shared), task_rx.clone(), result_tx.clone());
            let handle = std::thread::Builder::new()
                .name(format!("dino-loader-{i}"))
                .spawn(move || worker(&shared, &tasks, &results))
                .map_err(|e| DataError::Worker(format!("cannot start a loader thread: {e}")))?;
            workers.push(handle);
        }
        Ok(Self {
            shared,
            tasks: Some(task_tx),
            results: result_rx,
            workers,
            next: config.start_batch,
            issued: config.start_batch,
            end,
            window,
            ready: BTreeMap::new(),
            failed: false,
            skipped_total: 0,
        })
    }

    /// `drop_last`, as the reference: the incomplete last batch is never produced.
    pub fn batches_for(num_files: usize, batch_size: usize) -> usize {
        num_files.checked_div(batch_size).unwrap_or(0)
    }

    pub fn batches_per_epoch(&self) -> usize {
        self.end
    }

    /// Batches still to come in this epoch.
    pub fn remaining(&self) -> usize {
        if self.failed {
            0
        } else {
            self.end - self.next
        }
    }

    /// Unreadable files skipped in the batches handed out so far.
    pub fn skipped_total(&self) -> usize {
        self.skipped_total
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.shared.files
    }

    /// The next batch in order; `None` at the end of the epoch or after an error was returned.
    pub fn next_batch(&mut self) -> Option<BatchResult> {
        if self.failed || self.next >= self.end {
            return None;
        }
        let result = if self.workers.is_empty() {
            build_batch(&self.shared, self.next)
        } else {
            self.top_up();
            match self.wait_for(self.next) {
                Ok(r) => r,
                Err(e) => Err(e),
            }
        };
        self.next += 1;
        self.top_up();
        match &result {
            Ok(b) => self.skipped_total += b.skipped.len(),
            Err(_) => self.failed = true,
        }
        Some(result)
    }

    pub fn iter(&mut self) -> impl Iterator<Item = BatchResult> + '_ {
        std::iter::from_fn(move || self.next_batch())
    }

    fn top_up(&mut self) {
        let Some(tasks) = &self.tasks else { return };
        while self.issued < self.end && self.issued < self.next + self.window {
            if tasks.send(self.issued).is_err() {
                return;
            }
            self.issued += 1;
        }
    }

    fn wait_for(&mut self, k: usize) -> Result<BatchResult, DataError> {
        loop {
            if let Some(r) = self.ready.remove(&k) {
                return Ok(r);
            }
            match self.results.recv() {
                Ok((i, r)) => {
                    self.ready.insert(i, r);
                }
                Err(_) => return Err(DataError::Worker("all loader threads exited".into())),
            }
        }
    }
}

impl Iterator for MultiCropLoader {
    type Item = BatchResult;

    fn next(&mut self) -> Option<BatchResult> {
        self.next_batch()
    }
}

impl Drop for MultiCropLoader {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Closing the task channel wakes idle workers; busy ones see `stop` at the next sample.
        self.tasks = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// The order of an epoch: a permutation that depends on nothing but `(seed, epoch)`.
pub fn epoch_permutation(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    p.shuffle(&mut rng_for(&[seed, epoch, PERMUTATION_STREAM]));
    p
}

fn worker(shared: &Shared, tasks: &Receiver<usize>, results: &Sender<(usize, BatchResult)>) {
    while let Ok(k) = tasks.recv() {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        // A bug in one batch must surface as an error to the trainer, not hang it waiting.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| build_batch(shared, k))).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            Err(DataError::Worker(format!("batch {k}: {msg}")))
        });
        if results.send((k, r)).is_err() {
            return;
        }
    }
}

fn build_batch(shared: &Shared, k: usize) -> BatchResult {
    let b = shared.config.batch_size;
    let aug = shared.augment.config();
    let sizes: Vec<usize> = (0..aug.num_crops()).map(|i| aug.crop_size(i)).collect();
    let mut buffers: Vec<Vec<f32>> = sizes.iter().map(|s| vec![0.0; b * 3 * s * s]).collect();
    let mut indices = Vec::with_capacity(b);
    let mut skipped = Vec::new();
    for slot in 0..b {
        if shared.stop.load(Ordering::Relaxed) {
            return Err(DataError::Worker("loader stopped".into()));
        }
        let pos = shared.config.shard.global_position(k * b + slot);
        let (index, img) = load_with_replacement(shared, pos, &mut skipped)?;
        let mut rng = rng_for(&[shared.config.seed, shared.config.epoch, pos as u64]);
        let mut views: Vec<&mut [f32]> = buffers
            .iter_mut()
            .zip(&sizes)
            .map(|(buf, s)| {
                let len = 3 * s * s;
                &mut buf[slot * len..(slot + 1) * len]
            })
            .collect();
        shared.augment.apply_into(&img, &mut rng, &mut views);
        indices.push(index);
    }
    let mut crops = Vec::with_capacity(buffers.len());
    for (buf, &s) in buffers.iter().zip(&sizes) {
        crops.push(Tensor::from_slice(buf).f_view([b as i64, 3, s as i64, s as i64])?);
    }
    Ok(Batch { batch_index: k, crops, indices, skipped })
}

/// Loads the sample at epoch position `pos`; an unreadable file is replaced by the next readable
/// one in the epoch's order (wrapping), so the choice is deterministic and the batch stays full.
fn load_with_replacement(shared: &Shared, pos: usize, skipped: &mut Vec<SkippedFile>) -> Result<(usize, image::RgbImage), DataError> {
    let n = shared.files.len();
    let mut last_reason = String::new();
    for step in 0..n {
        let index = shared.permutation[(pos + step) % n];
        let path = &shared.files[index];
        let known = lock(&shared.unreadable).get(&index).cloned();
        let reason = match known {
            Some(reason) => reason,
            None => match load_rgb_limited(path, &shared.config.decode_limits) {
                Ok(img) => return Ok((index, img)),
                Err(e) => {
                    let mut bad = lock(&shared.unreadable);
                    if bad.insert(index, e.reason.clone()).is_none() {
                        shared.unreadable_count.fetch_add(1, Ordering::Relaxed);
                    }
                    e.reason
                }
            },
        };
        tracing::warn!(path = %path.shown(), %reason, "skipping unreadable image");
        skipped.push(SkippedFile { path: path.clone(), index, reason: reason.clone() });
        last_reason = format!("{}: {reason}", path.shown());
        if shared.unreadable_count.load(Ordering::Relaxed) >= n {
            break;
        }
    }
    Err(DataError::AllUnreadable { count: n, last: last_reason })
}

/// A poisoned lock only means another worker panicked mid-insert; the map is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::demo::render;
    use std::path::Path;
    use std::time::{Duration, Instant};

    fn images(dir: &Path, n: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| {
                let p = dir.join(format!("{i:03}.png"));
                render(i % 5, 12, &mut rng_for(&[i as u64])).save(&p).unwrap();
                p
            })
            .collect()
    }

    fn aug() -> AugmentConfig {
        AugmentConfig {
            global_size: 16,
            local_size: 8,
            global_scale: (0.4, 1.0),
            local_scale: (0.05, 0.4),
            local_crops_number: 2,
            blur_sigma: (0.1, 2.0),
            colour: crate::data::ColourAugment::dino(),
        }
    }

    fn cfg(workers: usize, epoch: u64, start: usize) -> LoaderConfig {
        LoaderConfig {
            batch_size: 4,
            num_workers: workers,
            seed: 11,
            epoch,
            start_batch: start,
            prefetch: 0,
            shard: Shard::default(),
            decode_limits: DecodeLimits::default(),
        }
    }

    fn flat(b: &Batch) -> Vec<Vec<f32>> {
        b.crops.iter().map(|t| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()).collect()
    }

    #[test]
    fn shards_are_disjoint_cover_the_epoch_and_add_up_to_the_big_batch() {
        let d = tempfile::tempdir().unwrap();
        let f = images(d.path(), 13);
        let world = 2;
        // Single process, batch 4 = 2 ranks x 2.
        let mut single = MultiCropLoader::new(f.clone(), aug(), cfg(1, 3, 0)).unwrap();
        let mut ranks: Vec<MultiCropLoader> = (0..world)
            .map(|rank| {
                MultiCropLoader::new(f.clone(), aug(), LoaderConfig { batch_size: 2, shard: Shard { rank, world }, ..cfg(1, 3, 0) })
                    .unwrap()
            })
            .collect();
        assert_eq!(ranks[0].batches_per_epoch(), 3, "ceil(13 / 2) = 7 samples per rank, 3 batches of 2");
        let mut seen = vec![];
        for _ in 0..3 {
            let big = single.next_batch().unwrap().unwrap();
            let parts: Vec<Batch> = ranks.iter_mut().map(|l| l.next_batch().unwrap().unwrap()).collect();
            // Global positions interleave: rank 0 holds 0 and 2 of the big batch, rank 1 holds 1 and 3.
            for (slot, &index) in big.indices.iter().enumerate() {
                assert_eq!(parts[slot % world].indices[slot / world], index);
            }
            let (fb, f0, f1) = (flat(&big), flat(&parts[0]), flat(&parts[1]));
            for c in 0..fb.len() {
                let per = fb[c].len() / 4;
                for slot in 0..4 {
                    let part = if slot % 2 == 0 { &f0[c] } else { &f1[c] };
                    assert_eq!(&fb[c][slot * per..(slot + 1) * per], &part[(slot / 2) * per..(slot / 2 + 1) * per], "crop {c} slot {slot}");
                }
            }
            for p in &parts {
                seen.extend(p.indices.iter().copied());
            }
        }
        let shard = |rank| {
            let s = Shard { rank, world };
            let perm = epoch_permutation(13, 11, 3);
            (0..s.len(13)).map(|j| perm[s.global_position(j) % 13]).collect::<Vec<_>>()
        };
        let (a, b) = (shard(0), shard(1));
        let mut all: Vec<usize> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 13, "together the shards cover every image");
        assert_eq!(a.len() + b.len(), 14, "padded by one wrap-around sample");
        assert_eq!(seen.len(), 12);
    }

    #[test]
    fn permutation_depends_only_on_seed_and_epoch() {
        let a = epoch_permutation(50, 1, 0);
        assert_eq!(a, epoch_permutation(50, 1, 0));
        assert_ne!(a, epoch_permutation(50, 1, 1));
        assert_ne!(a, epoch_permutation(50, 2, 0));
        let mut s = a.clone();
        s.sort();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn drop_last_and_shapes() {
        let d = tempfile::tempdir().unwrap();
        let mut l = MultiCropLoader::new(images(d.path(), 10), aug(), cfg(2, 0, 0)).unwrap();
        assert_eq!(l.batches_per_epoch(), 2);
        let b = l.next_batch().unwrap().unwrap();
        assert_eq!(b.crops.len(), 4);
        assert_eq!(b.crops[0].size(), [4, 3, 16, 16]);
        assert_eq!(b.crops[3].size(), [4, 3, 8, 8]);
        assert_eq!(b.crops[0].kind(), tch::Kind::Float);
        assert!(b.skipped.is_empty());
        assert!(l.next_batch().unwrap().is_ok());
        assert!(l.next_batch().is_none());
        assert_eq!(l.remaining(), 0);
    }

    #[test]
    fn prefetch_window_bounds_batches_in_flight() {
        let d = tempfile::tempdir().unwrap();
        let files = images(d.path(), 40);
        let mut c = cfg(2, 0, 0);
        c.batch_size = 1;
        c.prefetch = 3;
        let mut l = MultiCropLoader::new(files, aug(), c).unwrap();
        for _ in 0..5 {
            l.next_batch().unwrap().unwrap();
            assert!(l.issued - l.next <= 3);
            assert!(l.ready.len() <= 3);
        }
    }

    #[test]
    fn errors_for_bad_settings() {
        let d = tempfile::tempdir().unwrap();
        let files = images(d.path(), 3);
        assert!(matches!(MultiCropLoader::new(files.clone(), aug(), cfg(1, 0, 0)), Err(DataError::TooFewImages { .. })));
        let mut c = cfg(1, 0, 0);
        c.batch_size = 0;
        assert!(MultiCropLoader::new(files.clone(), aug(), c).is_err());
        let mut c = cfg(1, 0, 5);
        c.batch_size = 1;
        let e = MultiCropLoader::new(files, aug(), c).err().unwrap().to_string();
        assert!(e.contains("start batch 5"), "{e}");
    }

    #[test]
    fn same_batches_whatever_the_number_of_workers() {
        let d = tempfile::tempdir().unwrap();
        let files = images(d.path(), 17);
        let run = |w| -> Vec<(Vec<usize>, Vec<Vec<f32>>)> {
            MultiCropLoader::new(files.clone(), aug(), cfg(w, 3, 0))
                .unwrap()
                .map(|b| b.unwrap())
                .map(|b| (b.indices.clone(), flat(&b)))
                .collect()
        };
        let zero = run(0);
        assert_eq!(zero.len(), 4);
        assert_eq!(zero, run(1));
        assert_eq!(zero, run(3));
    }

    #[test]
    fn dropping_stops_workers_promptly() {
        let d = tempfile::tempdir().unwrap();
        let files = images(d.path(), 64);
        let mut c = cfg(2, 0, 0);
        c.batch_size = 2;
        let mut l = MultiCropLoader::new(files, aug(), c).unwrap();
        l.next_batch().unwrap().unwrap();
        let t = Instant::now();
        drop(l);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
}
