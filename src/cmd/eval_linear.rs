//! `dino eval linear`: the reference's linear-probe protocol (or the fast cached-features one) from the
//! command line, resumable from its output folder, printing progress and the result.

use super::eval_args::LinearArgs;
use super::eval_setup::Prepared;
use super::progress::Progress;
use crate::eval::features::{FeatureKind, LabeledFeatures, Unreadable};
use crate::eval::linear::{
    load_state, save_state, train, AugmentedBatches, CachedBatches, EpochLog, Evaluation, LinearHead, ProbeConfig, ProbeState,
    TrainBatches, LOG, STATE_TENSORS,
};
use crate::eval::EvalError;
use crate::files::ShowPath;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub fn run_command(args: &LinearArgs) -> Result<i32> {
    if args.epochs < 1 || args.n_last_blocks < 1 || args.val_freq < 1 || args.lr.is_nan() || args.lr <= 0.0 {
        anyhow::bail!("--epochs, --n_last_blocks and --val_freq must be at least 1 and --lr > 0");
    }
    let p = Prepared::new(&args.model)?;
    let mut probe = Probe::open(args, &p)?;
    if args.evaluate {
        if probe.state.epoch == 0 {
            anyhow::bail!("--evaluate: no trained classifier for this protocol in {}", probe.out.shown());
        }
        let e = probe.head.evaluate(&probe.val.features, &probe.val.labels);
        print_result(args.json, probe.protocol, &e, probe.state.best_acc, &probe.state);
        return Ok(0);
    }
    crate::say_err!(
        "linear probe: {}; {}-d features, {} classes, lr {:.2e}; output in {}",
        probe.protocol,
        probe.state.dim,
        probe.state.num_labels,
        probe.cfg.lr,
        probe.out.shown()
    );
    if probe.state.epoch > 0 {
        crate::say_err!("resuming from epoch {} (best top-1 so far {:.2}%)", probe.state.epoch, probe.state.best_acc);
    }
    let cached = if args.cached_features { Some(p.features(&args.model, "train", probe.kind)?) } else { None };
    let mut batches: Box<dyn TrainBatches> = match &cached {
        Some(features) => Box::new(CachedBatches { features, batch_size: probe.cfg.batch_size, seed: args.model.seed, device: p.device }),
        None => Box::new(AugmentedBatches::new(
            &p.source.backbone,
            p.split("train")?,
            p.source.config.crops.global_crop_size.max(1),
            probe.kind,
            probe.cfg.batch_size,
            args.model.seed,
            p.device,
        )),
    };
    let (best, last) = probe.train(batches.as_mut(), args.json)?;
    if !args.cached_features && !batches.skipped().is_empty() {
        crate::say_err!("warning: train: {}", Unreadable::summary(batches.skipped(), 5));
    }
    let e = probe.head.evaluate(&probe.val.features, &probe.val.labels);
    let unreadable: Vec<Unreadable> = batches.skipped().iter().chain(&probe.val.skipped).cloned().collect();
    let mut json = result_json(probe.protocol, &e, best, &probe.state, last.as_ref());
    json["unreadable"] = unreadable.len().into();
    json["unreadable_files"] = Unreadable::json(&unreadable);
    if args.json {
        crate::say!("{json}");
    } else {
        print_result(false, probe.protocol, &e, best, &probe.state);
    }
    if let Some(path) = p.record("linear", &json)? {
        crate::say_err!("result written to {}", path.shown());
    }
    Ok(0)
}

/// A probe being trained: its settings, the classifier and the state it resumes from.
struct Probe {
    protocol: &'static str,
    kind: FeatureKind,
    val: LabeledFeatures,
    out: PathBuf,
    cfg: ProbeConfig,
    head: LinearHead,
    state: ProbeState,
}

impl Probe {
    /// Sets the probe up, resuming from `out` when it holds a probe of the same protocol and shape.
    fn open(args: &LinearArgs, p: &Prepared) -> Result<Self> {
        let m = &args.model;
        let kind = FeatureKind::LastBlocks { n: args.n_last_blocks as usize, avgpool: args.avgpool_patchtokens };
        let protocol = if args.cached_features {
            "cached centre-crop features (fast protocol, no augmentation)"
        } else {
            "reference protocol (RandomResizedCrop + flip, features recomputed every epoch)"
        };
        let val = p.features(m, "val", kind)?;
        let num_labels = args.num_labels.unwrap_or(p.split("train")?.classes.len() as i64);
        if num_labels < 1 {
            anyhow::bail!("--num_labels must be at least 1");
        }
        let dim = val.features.size().get(1).copied().unwrap_or(0);
        let out = args.output_dir.clone().unwrap_or_else(|| match &p.source.run_dir {
            Some(r) => r.join("evals").join(format!("linear-{}", crate::eval::record::data_tag(p.layout.root()))),
            None => PathBuf::from("linear-eval"),
        });
        let cfg = ProbeConfig {
            epochs: args.epochs as usize,
            lr: args.lr * m.batch_size_per_gpu as f64 / 256.0,
            batch_size: m.batch_size_per_gpu.max(1) as usize,
            val_freq: args.val_freq as usize,
            seed: m.seed,
        };
        tch::manual_seed(m.seed as i64);
        let mut head = LinearHead::new(dim, num_labels, p.device);
        let data = p.layout.root().display().to_string();
        let content_id = p.source.content_id.clone();
        let fresh = ProbeState { epoch: 0, best_acc: 0.0, protocol: protocol.into(), dim, num_labels, data, content_id };
        let state = match load_state(&out) {
            Some(s)
                if (s.dim, s.num_labels, &s.protocol, &s.data, &s.content_id)
                    == (dim, num_labels, &fresh.protocol, &fresh.data, &fresh.content_id) =>
            {
                head.load(&out.join(STATE_TENSORS))?;
                s
            }
            _ => fresh,
        };
        Ok(Self { protocol, kind, val, out, cfg, head, state })
    }

    /// Trains the remaining epochs, logging each to `log.txt` and saving the state after each so an
    /// interrupted probe resumes; returns the best top-1 and the last epoch's log.
    fn train(&mut self, batches: &mut dyn TrainBatches, json: bool) -> Result<(f64, Option<EpochLog>)> {
        let mut log_file = crate::files::open_append(&out_file(&self.out, LOG)?, 0o666)?;
        let bar = Progress::new("linear epochs");
        let mut last = None;
        let Self { head, state, out, cfg, val, .. } = self;
        let best = train(head, batches, val, cfg, state.epoch, state.best_acc, &mut |log, head, best| {
            use std::io::Write;
            let line = serde_json::to_string(log).map_err(|e| EvalError::io(out.as_path(), e))?;
            writeln!(log_file, "{line}").map_err(|e| EvalError::io(out.as_path(), e))?;
            if let (false, Some(a)) = (json, log.test_acc1) {
                let test_loss = log.test_loss.unwrap_or(0.0);
                crate::say!(
                    "epoch {}: train_loss {:.4} lr {:.2e} test_loss {test_loss:.4} top-1 {a:.2}%  max accuracy so far {best:.2}%",
                    log.epoch,
                    log.train_loss,
                    log.train_lr
                );
            }
            bar.update(log.epoch + 1, cfg.epochs);
            state.epoch = log.epoch + 1;
            state.best_acc = best;
            save_state(out, head, state)?;
            last = Some(log.clone());
            Ok(())
        })?;
        Ok((best, last))
    }
}

fn out_file(dir: &Path, name: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.shown()))?;
    Ok(dir.join(name))
}

fn result_json(protocol: &str, e: &Evaluation, best: f64, s: &ProbeState, last: Option<&EpochLog>) -> serde_json::Value {
    serde_json::json!({
        "protocol": protocol,
        "epochs": s.epoch,
        "num_labels": s.num_labels,
        "test_loss": e.loss,
        "test_acc1": e.acc1,
        "test_acc5": e.acc5,
        "best_acc1": best,
        "last_epoch": last,
    })
}

fn print_result(json: bool, protocol: &str, e: &Evaluation, best: f64, s: &ProbeState) {
    if json {
        crate::say!("{}", result_json(protocol, e, best, s, None));
        return;
    }
    crate::say!("linear probe ({protocol}), {} epochs", s.epoch);
    let top5 = e.acc5.map(|v| format!(", top-5 {v:.2}%")).unwrap_or_default();
    crate::say!("test: loss {:.4}, top-1 {:.2}%{top5}; best top-1 {best:.2}%", e.loss, e.acc1);
}
