//! What the network sees in the image on screen: its CLS attention (the mean over heads, then
//! each head) and the PCA colours of its last features, drawn over the image, for `a` wherever
//! the TUI shows an image; and which images of the split it finds most alike (`n`, `/`). A
//! worker thread loads the run's latest checkpoint (on the CPU: the GPU stays the trainer's) and
//! computes both; the UI thread only asks and draws. Pictures are kept per (checkpoint, image)
//! and a split's features per (checkpoint, split), so going back costs nothing twice and a new
//! checkpoint is never shown through an old one's eyes.

use crate::data::DataLayout;
use crate::eval::attention::{cls_attention, default_view_size, pca_map, view};
use crate::eval::features::{extract_files, extract_split, l2_normalize, ExtractOptions, FeatureCache, FeatureKind};
use crate::eval::heatmap::{overlay, rgb_of};
use crate::eval::source::{self, ModelSource, SourceSpec};
use crate::files::ShowPath;
use crate::model::Backbone;
use crate::run::checkpoint;
use crossbeam_channel::{Receiver, Sender};
use image::RgbImage;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::Tensor;

/// Pictures kept by the worker before it forgets the oldest: each is a few small images.
const CACHE_ENTRIES: usize = 256;

/// The pictures of one image through one checkpoint's eyes, in the order `←`/`→` steps through.
#[derive(Debug)]
pub struct Pictures {
    pub image: PathBuf,
    /// Which weights drew them (the checkpoint's content id or iteration).
    pub checkpoint: String,
    pub views: Vec<(String, RgbImage)>,
}

/// One image found like the query.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: PathBuf,
    /// Its class folder ("" when the split is unlabeled).
    pub label: String,
    /// Cosine similarity of the two images' features.
    pub similarity: f32,
}

/// The nearest images of a split to a query image, most similar first (the query itself left out).
#[derive(Debug)]
pub struct Neighbours {
    pub query: PathBuf,
    pub split: String,
    pub checkpoint: String,
    pub hits: Vec<Hit>,
}

/// The images of a split, for the neighbour search: the data root and the split's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitRef {
    pub root: PathBuf,
    pub name: String,
}

#[derive(Debug)]
enum Request {
    Pictures(PathBuf),
    Neighbours { query: PathBuf, split: SplitRef, top: usize },
}

/// What the worker answers, or why there is nothing (no checkpoint yet, a bad file).
#[derive(Debug)]
enum Answer {
    Pictures(PathBuf, Result<Arc<Pictures>, String>),
    Neighbours(PathBuf, Result<Arc<Neighbours>, String>),
}

/// The TUI's side of the worker: the request channel, the answers, and which view is shown.
#[derive(Default)]
pub struct Lens {
    requests: Option<Sender<Request>>,
    answers: Option<Receiver<Answer>>,
    /// `a` turned the lens on.
    pub on: bool,
    /// The view shown (index into `Pictures::views`), kept across images.
    pub index: usize,
    pub current: Option<Arc<Pictures>>,
    /// The image asked for and not answered yet.
    pub pending: Option<PathBuf>,
    pub error: Option<String>,
    /// The neighbour search shown (`n`), the query waiting for its answer, and why none came.
    pub neighbours: Option<Arc<Neighbours>>,
    pub neighbours_pending: Option<PathBuf>,
    pub neighbours_error: Option<String>,
}

impl Lens {
    /// Asks for the pictures of `image` (absolute path) through `run_dir`'s latest checkpoint,
    /// starting the worker on first use. Already shown or already asked: nothing to do.
    pub fn ask(&mut self, run_dir: &Path, image: &Path) {
        if self.current.as_ref().is_some_and(|p| p.image == image) || self.pending.as_deref() == Some(image) {
            return;
        }
        self.error = None;
        self.pending = Some(image.to_path_buf());
        self.send(run_dir, Request::Pictures(image.to_path_buf()));
    }

    /// Asks for the `top` images of `split` most like `query` (absolute path; any image file).
    pub fn ask_neighbours(&mut self, run_dir: &Path, query: &Path, split: SplitRef, top: usize) {
        self.neighbours_error = None;
        self.neighbours_pending = Some(query.to_path_buf());
        self.send(run_dir, Request::Neighbours { query: query.to_path_buf(), split, top });
    }

    fn send(&mut self, run_dir: &Path, request: Request) {
        if self.requests.is_none() {
            let (req_tx, req_rx) = crossbeam_channel::unbounded();
            let (ans_tx, ans_rx) = crossbeam_channel::unbounded();
            let run = run_dir.to_path_buf();
            let started = std::thread::Builder::new().name("tui-lens".into()).spawn(move || worker(&run, &req_rx, &ans_tx));
            if let Err(e) = started {
                self.error = Some(format!("cannot start the attention worker: {e}"));
                return;
            }
            (self.requests, self.answers) = (Some(req_tx), Some(ans_rx));
        }
        if let Some(tx) = &self.requests {
            let _ = tx.send(request);
        }
    }

    /// Takes the worker's answers; true when what is shown changed.
    pub fn poll(&mut self) -> bool {
        let Some(rx) = &self.answers else { return false };
        let answers: Vec<Answer> = rx.try_iter().collect();
        let mut changed = false;
        for answer in answers {
            changed |= match answer {
                Answer::Pictures(image, result) => self.take_pictures(&image, result),
                Answer::Neighbours(query, result) => self.take_neighbours(&query, result),
            };
        }
        changed
    }

    fn take_pictures(&mut self, image: &Path, result: Result<Arc<Pictures>, String>) -> bool {
        // Only the latest request's answer is shown; an answer for an image left behind while
        // it was computed is dropped (the worker has cached it for a return).
        if self.pending.as_deref() != Some(image) {
            return false;
        }
        self.pending = None;
        match result {
            Ok(p) => {
                self.index = self.index.min(p.views.len().saturating_sub(1));
                self.current = Some(p);
            }
            Err(e) => {
                self.current = None;
                self.error = Some(e);
            }
        }
        true
    }

    fn take_neighbours(&mut self, query: &Path, result: Result<Arc<Neighbours>, String>) -> bool {
        if self.neighbours_pending.as_deref() != Some(query) {
            return false;
        }
        self.neighbours_pending = None;
        match result {
            Ok(n) => self.neighbours = Some(n),
            Err(e) => self.neighbours_error = Some(e),
        }
        true
    }

    /// The view shown for `image`, when its pictures are here.
    pub fn shown(&self, image: &Path) -> Option<(&str, &RgbImage, usize, usize)> {
        let p = self.current.as_ref().filter(|p| self.on && p.image == image)?;
        let (label, img) = p.views.get(self.index)?;
        Some((label.as_str(), img, self.index, p.views.len()))
    }

    /// `←`/`→`: the previous or next view, round.
    pub fn step(&mut self, forward: bool) {
        let n = self.current.as_ref().map(|p| p.views.len()).unwrap_or(0);
        if n > 0 {
            self.index = if forward { (self.index + 1) % n } else { (self.index + n - 1) % n };
        }
    }
}

/// The worker: answers requests in order, skipping to the newest picture request when several
/// wait (a person scrolling through rows wants the row they stopped on).
fn worker(run_dir: &Path, requests: &Receiver<Request>, answers: &Sender<Answer>) {
    let mut model: Option<(String, ModelSource)> = None;
    let mut cache: HashMap<(String, PathBuf), Arc<Pictures>> = HashMap::new();
    let mut features: Option<SplitFeatures> = None;
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        batch.extend(requests.try_iter());
        let newest_picture = batch.iter().rposition(|r| matches!(r, Request::Pictures(_)));
        for (i, request) in batch.into_iter().enumerate() {
            let answer = match request {
                Request::Pictures(_) if Some(i) != newest_picture => continue,
                Request::Pictures(image) => {
                    let result = latest(run_dir, &mut model).and_then(|id| pictures_for(&id, &image, &model, &mut cache));
                    Answer::Pictures(image, result)
                }
                Request::Neighbours { query, split, top } => {
                    let result =
                        latest(run_dir, &mut model).and_then(|id| neighbours_for(run_dir, &id, &model, &mut features, &query, &split, top));
                    Answer::Neighbours(query, result.map(Arc::new))
                }
            };
            if answers.send(answer).is_err() {
                return;
            }
        }
    }
}

/// Loads the run's latest checkpoint unless it is the one loaded; its id.
fn latest(run_dir: &Path, model: &mut Option<(String, ModelSource)>) -> Result<String, String> {
    let (sidecars, problems) = checkpoint::list(&run_dir.join(crate::run::dir::CHECKPOINT_DIR));
    let Some((sidecar, meta)) = sidecars.first() else {
        return Err(problems.first().cloned().unwrap_or_else(|| "no checkpoint yet: the lens looks through the latest one".into()));
    };
    let id = meta.content_id().unwrap_or_else(|| format!("it{}", meta.iter));
    if model.as_ref().is_none_or(|(loaded, _)| *loaded != id) {
        let spec = SourceSpec::teacher(sidecar.display().to_string(), tch::Device::Cpu, 0);
        let source = source::load(&spec).map_err(|e| e.to_string())?;
        *model = Some((id.clone(), source));
    }
    Ok(id)
}

fn pictures_for(
    id: &str,
    image: &Path,
    model: &Option<(String, ModelSource)>,
    cache: &mut HashMap<(String, PathBuf), Arc<Pictures>>,
) -> Result<Arc<Pictures>, String> {
    if let Some(p) = cache.get(&(id.to_string(), image.to_path_buf())) {
        return Ok(p.clone());
    }
    let Some((_, source)) = model.as_ref() else { return Err("no model loaded".into()) };
    let views = draw_views(&source.backbone, source.config.crops.global_crop_size, image)?;
    let p = Arc::new(Pictures { image: image.to_path_buf(), checkpoint: id.to_string(), views });
    if cache.len() >= CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert((id.to_string(), image.to_path_buf()), p.clone());
    Ok(p)
}

/// A split's L2-normalised features through one checkpoint, with each row's file and label.
struct SplitFeatures {
    checkpoint: String,
    split: SplitRef,
    files: Vec<PathBuf>,
    labels: Vec<String>,
    features: Tensor,
}

/// The split's features (computed once per checkpoint, through the run's feature cache), the
/// query's (its own row when it belongs to the split), and the `top` most similar other rows.
fn neighbours_for(
    run_dir: &Path,
    id: &str,
    model: &Option<(String, ModelSource)>,
    features: &mut Option<SplitFeatures>,
    query: &Path,
    split: &SplitRef,
    top: usize,
) -> Result<Neighbours, String> {
    let Some((_, source)) = model.as_ref() else { return Err("no model loaded".into()) };
    let opts = ExtractOptions::new(source.config.crops.global_crop_size, 64, 1, tch::Device::Cpu, FeatureKind::Cls);
    if features.as_ref().is_none_or(|f| f.checkpoint != id || f.split != *split) {
        *features = Some(split_features(run_dir, id, source, split, &opts)?);
    }
    let Some(f) = features.as_ref() else { return Err("no features".into()) };
    let own = f.files.iter().position(|p| p == query);
    let q = match own {
        Some(i) => f.features.get(i as i64).unsqueeze(0),
        None => {
            let (x, _, skipped) =
                extract_files(&source.backbone, &[query.to_path_buf()], &opts, &mut |_, _| {}).map_err(|e| e.to_string())?;
            if let Some(u) = skipped.first() {
                return Err(format!("{}: {}", u.path.shown(), u.reason));
            }
            l2_normalize(&x)
        }
    };
    let hits = crate::eval::search::nearest(&f.features, &q, top + usize::from(own.is_some()))
        .into_iter()
        .flatten()
        .filter(|(i, _)| Some(*i) != own)
        .take(top)
        .map(|(i, similarity)| Hit { path: f.files[i].clone(), label: f.labels[i].clone(), similarity })
        .collect();
    Ok(Neighbours { query: query.to_path_buf(), split: split.name.clone(), checkpoint: id.to_string(), hits })
}

fn split_features(
    run_dir: &Path,
    id: &str,
    source: &ModelSource,
    split: &SplitRef,
    opts: &ExtractOptions,
) -> Result<SplitFeatures, String> {
    let layout = DataLayout::discover_any(&split.root).map_err(|e| e.to_string())?;
    let s = layout.split_named(&split.name).ok_or_else(|| format!("{} has no {} split", split.root.shown(), split.name))?;
    let cache = FeatureCache::for_run_or_user(Some(run_dir));
    let f = extract_split(&source.backbone, s, opts, cache.as_ref().map(|c| (c, source.identity.as_str())), &mut |_, _| {})
        .map_err(|e| e.to_string())?;
    let files = f.kept.iter().map(|&i| s.files[i].clone()).collect();
    let labels = f.kept.iter().map(|&i| s.classes.get(s.labels[i]).cloned().unwrap_or_default()).collect();
    Ok(SplitFeatures { checkpoint: id.to_string(), split: split.clone(), files, labels, features: l2_normalize(&f.features) })
}

/// A ViT's mean attention, each head's, then its PCA colours; a ResNet's PCA colours alone.
/// `crop`: the size the network trained at.
pub fn draw_views(backbone: &Backbone, crop: usize, image: &Path) -> Result<Vec<(String, RgbImage)>, String> {
    let img = crate::data::load_rgb(image).map_err(|e| format!("{}: {e}", image.shown()))?;
    let (pixels, x) = view(&img, backbone, default_view_size(crop), tch::Device::Cpu).map_err(|e| format!("{}: {e}", image.shown()))?;
    let mut views = vec![];
    if matches!(backbone, Backbone::Vit(_)) {
        let maps = cls_attention(backbone, &x, None).map_err(|e| e.to_string())?;
        views.push(("attention, mean of heads".to_string(), overlay(&pixels, &maps.mean())));
        for j in 0..maps.heads() {
            views.push((format!("attention, head {j}"), overlay(&pixels, &maps.attention.get(j as i64))));
        }
    }
    let pca = pca_map(backbone, &x).map_err(|e| e.to_string())?;
    views.push(("PCA of the last features".to_string(), rgb_of(&pca)));
    Ok(views)
}
