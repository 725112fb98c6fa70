//! `dino demo` (and `make demo`): the synthetic data set, the demo preset trained on it, and at
//! the end the proof a first run needs: k-NN of the run's teacher on the demo's held-out val split
//! beside the same network with random weights, measured, not claimed.

use super::cli::DemoArgs;
use super::eval_args::ModelArgs;
use crate::eval::source::CheckpointKey;
use crate::protocol::RunState;
use anyhow::Result;
use std::path::Path;

/// Images per class of the demo's train/ (val/ gets a quarter, pretext/ as many as train/).
const PER_CLASS: usize = 60;
/// Side of the demo's images in pixels.
const IMAGE_SIZE: u32 = 48;
/// The k the demo reports (the reference's headline k).
const K: usize = 20;

pub fn run(args: DemoArgs) -> Result<i32> {
    let data = args.dir.join("data");
    let summary = crate::data::write_demo_dataset(&data, PER_CLASS, 0, IMAGE_SIZE)?;
    crate::say!("{summary}");
    let mut config = crate::config::preset("demo").ok_or_else(|| anyhow::anyhow!("demo preset missing"))?;
    config.run.data_path = data.clone();
    let run_dir = args.dir.join("run");
    config.run.output_dir = Some(run_dir.clone());
    if let Some(e) = args.epochs {
        config.optim.epochs = usize::try_from(e).map_err(|_| crate::config::ConfigError::invalid("epochs", e, "an integer >= 1"))?;
    }
    config.validate()?;
    let device = config.run.device.clone();
    let (state, code) = super::foreground::train_to_end(config, args.headless, args.theme)?;
    if state == Some(RunState::Finished) {
        let verdict = measure(&run_dir, &data, &device)?;
        for line in verdict.lines() {
            crate::say!("{line}");
        }
    }
    Ok(code)
}

/// k-NN top-1 of the run's teacher and of random weights on the demo's val split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DemoVerdict {
    pub run: f64,
    pub random: f64,
    pub num_val: usize,
    pub num_classes: usize,
}

/// Points above random weights from which the demo says the run learned: the health verdict's.
const LEARNED_MARGIN: f64 = crate::protocol::health::LEARNING_MARGIN;

impl DemoVerdict {
    /// Top-1 of guessing: one class in `num_classes`.
    pub fn chance(&self) -> f64 {
        100.0 / self.num_classes.max(1) as f64
    }

    pub fn lines(&self) -> Vec<String> {
        let margin = self.run - self.random;
        let verdict = if margin >= LEARNED_MARGIN {
            format!("the run learned: {margin:+.1} points over the same network with random weights")
        } else {
            format!(
                "the run has not learned beyond random weights ({margin:+.1} points; the preset measured +45 to +55): \
                 docs/evaluation.md, \"The demo\""
            )
        };
        vec![
            format!("k-NN top-1 (k = {K}) on the demo's held-out val split ({} images, {} classes):", self.num_val, self.num_classes),
            format!("  this run's teacher   {:>5.1} %", self.run),
            format!("  random weights       {:>5.1} %   (the same network, untrained)", self.random),
            format!("  chance               {:>5.1} %", self.chance()),
            format!("dino demo: {verdict}"),
        ]
    }
}

/// Runs both k-NNs (features cached in the run, as `dino eval knn` caches them).
pub fn measure(run_dir: &Path, data: &Path, device: &str) -> Result<DemoVerdict> {
    let model = |weights: &str, config: Option<&Path>| ModelArgs {
        pretrained_weights: weights.to_string(),
        checkpoint_key: CheckpointKey::Teacher,
        config: config.map(Path::to_path_buf),
        arch: None,
        patch_size: None,
        global_crop_size: None,
        data_path: Some(data.to_path_buf()),
        device: device.to_string(),
        batch_size_per_gpu: 128,
        num_workers: 2,
        seed: 0,
        no_cache: false,
    };
    let run_weights = run_dir.to_string_lossy();
    let trained = super::eval::knn_of(&model(&run_weights, None), &[K], 0.07)?;
    let random = super::eval::knn_of(&model("random", Some(run_dir)), &[K], 0.07)?;
    let top1 = |r: &crate::eval::KnnReport| r.result(K).map(|x| x.top1).unwrap_or(0.0);
    Ok(DemoVerdict { run: top1(&trained), random: top1(&random), num_val: trained.num_val, num_classes: trained.num_classes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_says_learned_only_with_the_margin() {
        let v = DemoVerdict { run: 71.0, random: 22.0, num_val: 75, num_classes: 5 };
        let text = v.lines().join("\n");
        assert!(text.contains("the run learned: +49.0 points") && text.contains("random weights        22.0 %"), "{text}");
        assert!(text.contains("chance                20.0 %"), "{text}");
        let weak = DemoVerdict { run: 25.0, ..v };
        assert!(weak.lines().join("\n").contains("has not learned beyond random weights (+3.0 points;"));
        let worse = DemoVerdict { run: 17.3, ..v };
        assert!(worse.lines().join("\n").contains("(-4.7 points;"), "a loss is shown as one");
    }
}
