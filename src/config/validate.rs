//! Validation of a `TrainConfig`: every value is checked against its allowed range, and the error
//! names the setting (as the flag is spelled) and what would be accepted.

use super::TrainConfig;
use crate::files::ShowPath;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("invalid value {value} for --{setting}: expected {expected}")]
    Invalid { setting: String, value: String, expected: String },
    #[error("cannot read config file {}: {message}", path.shown())]
    Io { path: PathBuf, message: String },
    #[error("bad config{}: {message}", path.as_ref().map(|p| format!(" file {}", p.shown())).unwrap_or_default())]
    Parse { path: Option<PathBuf>, message: String },
}

impl ConfigError {
    pub fn invalid(setting: &str, value: impl ToString, expected: &str) -> Self {
        Self::Invalid { setting: setting.into(), value: value.to_string(), expected: expected.into() }
    }
}

fn positive(setting: &str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(setting, v, "a finite number > 0"))
    }
}

fn non_negative(setting: &str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(setting, v, "a finite number >= 0"))
    }
}

/// A count within `[min, max]`; the bounds keep a typo (`out_dim = 100000000000`) from becoming an
/// allocation that aborts the process.
fn count(setting: &str, v: usize, min: usize, max: usize) -> Result<(), ConfigError> {
    if (min..=max).contains(&v) {
        Ok(())
    } else {
        Err(ConfigError::invalid(setting, v, &format!("an integer in [{min}, {max}]")))
    }
}

/// A temperature: a softmax divides by it, so it must be > 0; above 1 the teacher would be softer
/// than the student, which DINO never wants.
fn temperature(setting: &str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 && v <= 1.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(setting, v, "a number in (0, 1]"))
    }
}

fn unit_interval(setting: &str, v: f64) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(ConfigError::invalid(setting, v, "a number in [0, 1]"))
    }
}

fn crop_scale(setting: &str, (lo, hi): (f64, f64)) -> Result<(), ConfigError> {
    let in_range = |x: f64| x > 0.0 && x <= 1.0;
    if in_range(lo) && in_range(hi) && lo <= hi {
        Ok(())
    } else {
        Err(ConfigError::invalid(setting, format!("{lo} {hi}"), "two numbers MIN MAX with 0 < MIN <= MAX <= 1"))
    }
}

/// Upper bounds of sizes and counts: far above any real run, far below what would exhaust memory.
const MAX_DIM: usize = 1 << 20;
const MAX_WIDTH: usize = 1 << 16;
const MAX_PIXELS: usize = 8192;
const MAX_EPOCHS: usize = 1_000_000;
const MAX_WORKERS: usize = 256;

impl TrainConfig {
    /// Checks every setting; the first bad one is reported.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_model()?;
        self.validate_teacher_and_optim()?;
        self.validate_crops()?;
        self.validate_run()
    }

    fn validate_model(&self) -> Result<(), ConfigError> {
        let m = &self.model;
        count("patch_size", m.patch_size, 1, MAX_PIXELS)?;
        for (name, v, max) in [("embed_dim", m.embed_dim, MAX_WIDTH), ("depth", m.depth, 256), ("num_heads", m.num_heads, 1024)] {
            if let Some(v) = v {
                count(name, v, 1, max)?;
            }
        }
        if self.is_vit() {
            let (dim, heads) = self.vit_spec().dim_and_heads();
            if dim % heads != 0 {
                return Err(ConfigError::invalid("embed_dim", dim, &format!("a multiple of num_heads ({heads})")));
            }
            for (name, size) in [("global_crop_size", self.crops.global_crop_size), ("local_crop_size", self.crops.local_crop_size)] {
                if size % m.patch_size != 0 {
                    return Err(ConfigError::invalid(name, size, &format!("a multiple of --patch_size ({})", m.patch_size)));
                }
            }
        }
        // 4x torchvision's 64: a ResNet-50's last stage is then 8,192 channels wide (about 400M
        // parameters); more is a typo, not a network.
        count("resnet_width", m.resnet_width, 1, 256)?;
        count("out_dim", m.out_dim, 1, MAX_DIM)?;
        count("head_hidden_dim", m.head_hidden_dim, 1, MAX_WIDTH)?;
        count("head_bottleneck_dim", m.head_bottleneck_dim, 1, MAX_WIDTH)?;
        if !(0.0..1.0).contains(&m.drop_path_rate) {
            return Err(ConfigError::invalid("drop_path_rate", m.drop_path_rate, "a number in [0, 1)"));
        }
        Ok(())
    }

    fn validate_teacher_and_optim(&self) -> Result<(), ConfigError> {
        let (t, o) = (&self.teacher, &self.optim);
        unit_interval("momentum_teacher", t.momentum_teacher)?;
        temperature("warmup_teacher_temp", t.warmup_teacher_temp)?;
        temperature("teacher_temp", t.teacher_temp)?;
        count("warmup_teacher_temp_epochs", t.warmup_teacher_temp_epochs, 0, MAX_EPOCHS)?;
        non_negative("weight_decay", o.weight_decay)?;
        non_negative("weight_decay_end", o.weight_decay_end)?;
        non_negative("clip_grad", o.clip_grad)?;
        non_negative("koleo_loss_weight", o.koleo_loss_weight)?;
        count("batch_size_per_gpu", o.batch_size_per_gpu, 1, MAX_WIDTH)?;
        count("epochs", o.epochs, 1, MAX_EPOCHS)?;
        count("freeze_last_layer", o.freeze_last_layer, 0, MAX_EPOCHS)?;
        positive("lr", o.lr)?;
        // Warm-ups longer than the run are allowed (the reference's own README runs 2 epochs with
        // the default 10 warm-up epochs); the schedules then end inside the warm-up.
        count("warmup_epochs", o.warmup_epochs, 0, MAX_EPOCHS)?;
        non_negative("min_lr", o.min_lr)?;
        if o.min_lr > o.lr {
            return Err(ConfigError::invalid("min_lr", o.min_lr, &format!("a number <= --lr ({}): the cosine schedule falls to it", o.lr)));
        }
        Ok(())
    }

    fn validate_crops(&self) -> Result<(), ConfigError> {
        let c = &self.crops;
        crop_scale("global_crops_scale", c.global_crops_scale)?;
        crop_scale("local_crops_scale", c.local_crops_scale)?;
        let (lo, hi) = c.blur_sigma;
        if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo <= hi && hi <= 100.0) {
            return Err(ConfigError::invalid(
                "blur_sigma",
                format!("{lo} {hi}"),
                "two numbers MIN MAX with 0 <= MIN <= MAX <= 100 (0 0: no blur)",
            ));
        }
        unit_interval("color_jitter_prob", c.color_jitter_prob)?;
        let [bright, contrast, saturation, hue] = c.color_jitter;
        if ![bright, contrast, saturation].iter().all(|x| (0.0..=10.0).contains(x)) || !(0.0..=0.5).contains(&hue) {
            return Err(ConfigError::invalid(
                "color_jitter",
                format!("{bright} {contrast} {saturation} {hue}"),
                "four numbers BRIGHTNESS CONTRAST SATURATION HUE: the first three in [0, 10] (factors drawn from [1 - x, 1 + x]), the hue shift in [0, 0.5]",
            ));
        }
        unit_interval("grayscale_prob", c.grayscale_prob)?;
        unit_interval("solarize_prob", c.solarize_prob)?;
        count("local_crops_number", c.local_crops_number, 0, 64)?;
        count("global_crop_size", c.global_crop_size, 1, MAX_PIXELS)?;
        count("local_crop_size", c.local_crop_size, 1, MAX_PIXELS)
    }

    fn validate_run(&self) -> Result<(), ConfigError> {
        let r = &self.run;
        count("saveckp_freq", r.saveckp_freq, 0, MAX_EPOCHS)?;
        count("keep_checkpoints", r.keep_checkpoints, 1, 10_000)?;
        count("print_freq", r.print_freq, 1, usize::MAX)?;
        count("eval_knn_every", r.eval_knn_every, 0, MAX_EPOCHS)?;
        count("num_workers", r.num_workers, 1, MAX_WORKERS)?;
        parse_device(&r.device)?;
        // `runs/NAME` must stay in runs/: `--name ../../escape_run` made a run elsewhere.
        if let Some(name) = &r.name {
            crate::files::check_plain_name(name).map_err(|why| {
                ConfigError::invalid("name", crate::files::escape_controls(name), &format!("one plain name, a folder of runs/ ({why})"))
            })?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    Auto,
    Cpu,
    Cuda(usize),
}

/// The device a `--device` value names, falling back from `auto` to the CPU; a CUDA index past the
/// devices libtorch sees is an error naming the setting. Training and evaluation both resolve here.
pub fn resolve_device(s: &str) -> Result<tch::Device, ConfigError> {
    // libtorch answers CUDA questions once: its CUDA backend has to be loaded before the first.
    let backend = crate::model::cuda_backend::load();
    Ok(match parse_device(s)? {
        DeviceRequest::Auto => {
            if tch::Cuda::is_available() {
                tch::Device::Cuda(0)
            } else {
                tch::Device::Cpu
            }
        }
        DeviceRequest::Cpu => tch::Device::Cpu,
        DeviceRequest::Cuda(i) => {
            let n = tch::Cuda::device_count().max(0) as usize;
            if i >= n {
                let seen = format!("a CUDA device libtorch sees ({n} here; {})", backend.describe());
                return Err(ConfigError::invalid("device", format!("cuda:{i}"), &seen));
            }
            tch::Device::Cuda(i)
        }
    })
}

pub fn parse_device(s: &str) -> Result<DeviceRequest, ConfigError> {
    let expected = "auto, cpu, cuda or cuda:N";
    match s {
        "auto" => Ok(DeviceRequest::Auto),
        "cpu" => Ok(DeviceRequest::Cpu),
        "cuda" => Ok(DeviceRequest::Cuda(0)),
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(DeviceRequest::Cuda)
            .ok_or_else(|| ConfigError::invalid("device", other, expected)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(f: impl FnOnce(&mut TrainConfig)) -> String {
        let mut c = TrainConfig::default();
        f(&mut c);
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn negative_lr_names_the_setting() {
        let e = err_of(|c| c.optim.lr = -0.1);
        assert!(e.contains("--lr") && e.contains("> 0"), "{e}");
    }

    #[test]
    fn unknown_arch_lists_the_choices() {
        let e = TrainConfig::from_toml_str("arch = \"nonsense\"").unwrap_err().to_string();
        assert!(e.contains("arch") && e.contains("vit_small") && e.contains("resnet50"), "{e}");
    }

    #[test]
    fn colour_settings_out_of_range_name_the_flag() {
        let e = err_of(|c| c.crops.color_jitter = [0.4, 0.4, 0.2, 0.6]);
        assert!(e.contains("--color_jitter") && e.contains("0.6"), "{e}");
        let e = err_of(|c| c.crops.color_jitter = [f64::NAN, 0.4, 0.2, 0.1]);
        assert!(e.contains("--color_jitter"), "{e}");
        let e = err_of(|c| c.crops.color_jitter = [0.4, -0.1, 0.2, 0.1]);
        assert!(e.contains("--color_jitter"), "{e}");
        for (setting, e) in [
            ("--color_jitter_prob", err_of(|c| c.crops.color_jitter_prob = 1.5)),
            ("--grayscale_prob", err_of(|c| c.crops.grayscale_prob = -0.1)),
            ("--solarize_prob", err_of(|c| c.crops.solarize_prob = f64::NAN)),
        ] {
            assert!(e.contains(setting), "{e}");
        }
    }

    #[test]
    fn crop_scale_outside_unit_interval() {
        let e = err_of(|c| c.crops.global_crops_scale = (0.4, 1.5));
        assert!(e.contains("--global_crops_scale"), "{e}");
        let e = err_of(|c| c.crops.local_crops_scale = (0.0, 0.4));
        assert!(e.contains("--local_crops_scale"), "{e}");
        let e = err_of(|c| c.crops.local_crops_scale = (0.5, 0.4));
        assert!(e.contains("MIN <= MAX"), "{e}");
        let e = err_of(|c| c.crops.blur_sigma = (2.0, 1.0));
        assert!(e.contains("--blur_sigma"), "{e}");
        let e = err_of(|c| c.crops.blur_sigma = (-1.0, 1.0));
        assert!(e.contains("--blur_sigma"), "{e}");
        let mut off = TrainConfig::default();
        off.crops.blur_sigma = (0.0, 0.0);
        assert!(off.validate().is_ok());
    }

    #[test]
    fn crop_size_must_divide_by_patch() {
        let e = err_of(|c| c.crops.global_crop_size = 30);
        assert!(e.contains("--global_crop_size") && e.contains("patch_size"), "{e}");
    }

    #[test]
    fn embed_dim_must_divide_by_heads() {
        let e = err_of(|c| {
            c.model.embed_dim = Some(100);
            c.model.num_heads = Some(3);
        });
        assert!(e.contains("--embed_dim"), "{e}");
    }

    #[test]
    fn devices() {
        assert_eq!(parse_device("cuda:1").unwrap(), DeviceRequest::Cuda(1));
        assert!(parse_device("gpu").unwrap_err().to_string().contains("--device"));
    }
}
