//! What `dino search` and `dino duplicates` describe images with: a network (any weights the
//! evaluations take, a run name included) or raw pixels (`--pretrained_weights pixels`, the
//! baseline a network is measured against), and the folder of images they look in.

use super::eval_args::ModelArgs;
use super::eval_setup::Prepared;
use super::progress::Progress;
use crate::config::validate::resolve_device;
use crate::data::{DataLayout, Split};
use crate::eval::copy_detection::{self, CopyParams, Extractor};
use crate::eval::features::{extract_files, pixel_features, EvalTransform, FeatureKind, Unreadable};
use crate::eval::FeatureCache;
use anyhow::{Context, Result};
use std::path::PathBuf;
use tch::{Device, Tensor};

/// `--pretrained_weights pixels`.
pub const PIXELS: &str = "pixels";

/// Side of the raw pixels' evaluation view when `--global_crop_size` does not say (the size of
/// cifar-vehicles' images).
pub const PIXELS_CROP: usize = 32;

pub enum ImageSource {
    Network(Box<Prepared>),
    Pixels { layout: Box<DataLayout>, device: Device, crop: usize },
}

/// Features of some images: one row per readable image, the index of each row among the images
/// given, and those that could not be read.
pub struct Rows {
    pub features: Tensor,
    pub kept: Vec<usize>,
    pub skipped: Vec<Unreadable>,
}

impl ImageSource {
    /// The weights `m` names and the folder of `--data_path` (any layout).
    pub fn load(m: &ModelArgs) -> Result<Self> {
        if m.pretrained_weights.trim() != PIXELS {
            return Ok(Self::Network(Box::new(Prepared::new_any_layout(m)?)));
        }
        let Some(data) = &m.data_path else {
            anyhow::bail!("--pretrained_weights pixels needs --data_path: there is no run to take it from")
        };
        let layout =
            DataLayout::discover_any(data).context("set --data_path to a folder of images (class folders, train/ and val/, or none)")?;
        for w in layout.warnings() {
            crate::say_err!("warning: {w}");
        }
        crate::say_err!("describing images by their raw pixels");
        Ok(Self::Pixels { layout: Box::new(layout), device: resolve_device(&m.device)?, crop: m.global_crop_size.unwrap_or(PIXELS_CROP) })
    }

    pub fn layout(&self) -> &DataLayout {
        match self {
            Self::Network(p) => &p.layout,
            Self::Pixels { layout, .. } => layout,
        }
    }

    /// One line for people (and the JSON's `weights`).
    pub fn description(&self) -> String {
        match self {
            Self::Network(p) => p.source.description.clone(),
            Self::Pixels { crop, .. } => format!("raw pixels ({crop} px)"),
        }
    }

    /// The split `--split` names, or train (pretext, that is every image, on a folder without
    /// train/), as `dino outliers` picks.
    pub fn split(&self, name: Option<&str>) -> Result<&Split> {
        let layout = self.layout();
        let name =
            name.map(str::to_string).unwrap_or_else(|| if layout.split_named("train").is_some() { "train" } else { "pretext" }.into());
        let s = layout.split_named(&name);
        Ok(s.ok_or_else(|| crate::eval::EvalError::NoLabeledSplit { root: layout.root().to_path_buf(), split: name })?)
    }

    /// The image size the features are made at.
    pub fn crop(&self) -> usize {
        match self {
            Self::Network(p) => p.source.config.crops.global_crop_size,
            Self::Pixels { crop, .. } => *crop,
        }
    }

    /// What makes copy-detection descriptors.
    pub fn extractor(&self) -> Extractor<'_> {
        match self {
            Self::Network(p) => Extractor::Network(&p.source.backbone),
            Self::Pixels { .. } => Extractor::Pixels,
        }
    }

    fn device(&self) -> Device {
        match self {
            Self::Network(p) => p.device,
            Self::Pixels { device, .. } => *device,
        }
    }

    /// The search features of a split (the network's k-NN features through the feature cache,
    /// or the flattened pixels), not normalised.
    pub fn split_features(&self, m: &ModelArgs, split: &Split) -> Result<Rows> {
        match self {
            Self::Network(p) => {
                let f = p.features(m, &split.name, FeatureKind::Cls)?;
                Ok(Rows { features: f.features, kept: f.kept, skipped: f.skipped })
            }
            Self::Pixels { crop, .. } => self.file_features(m, &split.files, &format!("pixels {}", split.name), *crop),
        }
    }

    /// As `split_features` for files outside any split (the queries), never cached.
    pub fn files_features(&self, m: &ModelArgs, files: &[PathBuf]) -> Result<Rows> {
        self.file_features(m, files, "queries", self.crop())
    }

    fn file_features(&self, m: &ModelArgs, files: &[PathBuf], label: &str, crop: usize) -> Result<Rows> {
        let (features, kept, skipped) = match self {
            Self::Network(p) => {
                let bar = Progress::new(label);
                extract_files(&p.source.backbone, files, &p.options(m, FeatureKind::Cls), &mut |d, t| bar.update(d, t))?
            }
            Self::Pixels { .. } => pixel_features(files, EvalTransform::for_crop(crop), m.num_workers)?,
        };
        Ok(Rows { features, kept, skipped })
    }

    /// Copy-detection descriptors of a split (not yet whitened), through the feature cache for a
    /// network.
    pub fn copy_descriptors(&self, m: &ModelArgs, split: &Split, params: &CopyParams) -> Result<Rows> {
        let cache = match self {
            Self::Network(p) => p.cache.as_ref().map(|c| (c, p.source.identity.as_str())),
            Self::Pixels { .. } => None,
        };
        let extractor = self.extractor();
        let key = cache.map(|(c, identity)| (c, FeatureCache::key_for(identity, split, "square", &params.tag())));
        if let Some((c, key)) = &key {
            if let Some((features, kept)) = c.load(key, split.len()) {
                crate::say_err!("copy descriptors {}: {} images from the cache", split.name, kept.len());
                return Ok(Rows { features, kept, skipped: vec![] });
            }
        }
        let bar = Progress::new(format!("copies {}", split.name));
        let how = (self.device(), m.batch_size_per_gpu.max(1) as usize, m.num_workers);
        let (features, kept, skipped) = copy_detection::descriptors(extractor, &split.files, params, how, &mut |d, t| bar.update(d, t))?;
        if let Some((c, key)) = &key {
            // A cache that cannot be written only costs time next run.
            if let Err(e) = c.store(key, &features, &kept) {
                crate::say_err!("note: copy descriptors not cached: {e}");
            }
        }
        Ok(Rows { features, kept, skipped })
    }
}
