//! What every evaluation command starts from: the weights the flags name, the data set, the
//! feature cache and the device, plus extraction with a progress bar and the record a result
//! leaves in its run directory.

use super::eval_args::ModelArgs;
use super::progress::Progress;
use crate::config::validate::resolve_device;
use crate::data::{DataLayout, Split};
use crate::eval::features::{extract_split, ExtractOptions, FeatureCache, FeatureKind, LabeledFeatures};
use crate::eval::source::{self, ModelSource};
use crate::eval::{record, EvalError};
use anyhow::{Context, Result};
use std::path::PathBuf;
use tch::Device;

/// The model, the data set and the cache an evaluation command works with.
pub struct Prepared {
    pub source: ModelSource,
    pub layout: DataLayout,
    pub cache: Option<FeatureCache>,
    pub device: Device,
}

impl Prepared {
    pub fn new(m: &ModelArgs) -> Result<Self> {
        Self::with_layout(m, DataLayout::discover, "set --data_path to a folder with train/CLASS/ and val/CLASS/")
    }

    /// As `new`, for commands that take any folder of images (`dino outliers`): an ImageFolder,
    /// train/ + val/ with or without pretext/, or images with no class folders at all.
    pub fn new_any_layout(m: &ModelArgs) -> Result<Self> {
        Self::with_layout(m, DataLayout::discover_any, "set --data_path to a folder of images (class folders, train/ and val/, or none)")
    }

    fn with_layout(
        m: &ModelArgs,
        discover: fn(&std::path::Path) -> Result<DataLayout, crate::data::DataError>,
        hint: &str,
    ) -> Result<Self> {
        let device = resolve_device(&m.device)?;
        let source = source::load(&m.spec(device))?;
        let data = m.data_path.clone().unwrap_or_else(|| source.config.run.data_path.clone());
        let layout = discover(&data).with_context(|| hint.to_string())?;
        for w in layout.warnings() {
            crate::say_err!("warning: {w}");
        }
        let cache = if m.no_cache { None } else { FeatureCache::for_run_or_user(source.run_dir.as_deref()) };
        crate::say_err!("evaluating {}", source.description);
        for note in &source.notes {
            crate::say_err!("  note: {note}");
        }
        Ok(Self { source, layout, cache, device })
    }

    pub fn split(&self, name: &str) -> Result<&Split, EvalError> {
        let s = self.layout.split_named(name);
        s.ok_or_else(|| EvalError::NoLabeledSplit { root: self.layout.root().to_path_buf(), split: name.into() })
    }

    pub fn options(&self, m: &ModelArgs, kind: FeatureKind) -> ExtractOptions {
        ExtractOptions::new(
            self.source.config.crops.global_crop_size,
            m.batch_size_per_gpu.max(1) as usize,
            m.num_workers,
            self.device,
            kind,
        )
    }

    /// Features of a split through the cache, with a progress bar.
    pub fn features(&self, m: &ModelArgs, split: &str, kind: FeatureKind) -> Result<LabeledFeatures> {
        let s = self.split(split)?;
        let opts = self.options(m, kind);
        let bar = Progress::new(format!("features {split}"));
        let cache = self.cache.as_ref().map(|c| (c, self.source.identity.as_str()));
        let f = extract_split(&self.source.backbone, s, &opts, cache, &mut |d, t| bar.update(d, t))?;
        if f.from_cache {
            crate::say_err!("features {split}: {} images from the cache", f.len());
        }
        if !f.skipped.is_empty() {
            crate::say_err!("warning: {split}: {}", crate::eval::features::Unreadable::summary(&f.skipped, 5));
        }
        Ok(f)
    }

    /// Records a result in the run directory, when the weights belong to a run.
    pub fn record(&self, kind: &str, json: &serde_json::Value) -> Result<Option<PathBuf>> {
        let Some(run) = &self.source.run_dir else { return Ok(None) };
        let root = self.layout.root();
        let label = self.source.result_label(root);
        let mut json = json.clone();
        if let Some(o) = json.as_object_mut() {
            o.insert("kind".into(), kind.into());
            o.insert("weights".into(), self.source.description.clone().into());
            o.insert("epoch".into(), self.source.epoch.into());
            o.insert("iter".into(), self.source.iter.into());
            o.insert("content_id".into(), self.source.content_id.clone().into());
            if let Some(network) = self.source.network {
                o.insert("network".into(), network.name().into());
            }
            o.insert("data".into(), root.display().to_string().into());
            o.insert("data_tag".into(), record::data_tag(root).into());
        }
        let path = record::write_result(run, kind, &label, &json)?;
        json["file"] = path.display().to_string().into();
        record::append_event(run, &json)?;
        if let Err(e) = crate::run::tensorboard::append_eval(run, &json) {
            crate::say_err!("note: result not added to the TensorBoard files: {e}");
        }
        Ok(Some(path))
    }
}
