//! Validation of a `TrainConfig`: every value is checked against its allowed range, and the error
//! names the setting (as the flag is spelled) and what would be accepted.

use super::TrainConfig;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("invalid value {value} for --{setting}: expected {expected}")]
    Invalid { setting: String, value: String, expected: String },
    #[error("cannot read config file {}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("bad config{}: {message}", path.as_ref().map(|p| format!(" file {}", p.display())).unwrap_or_default())]
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

fn at_least(setting: &str, v: i64, min: i64) -> Result<(), ConfigError> {
    if v >= min {
        Ok(())
    } else {
        Err(ConfigError::invalid(setting, v, &format!("an integer >= {min}")))
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

impl TrainConfig {
    /// Checks every setting; the first bad one is reported.
    pub fn validate(&self) -> Result<(), ConfigError> {
        at_least("patch_size", self.patch_size, 1)?;
        for (name, v) in [("embed_dim", self.embed_dim), ("depth", self.depth), ("num_heads", self.num_heads)] {
            if let Some(v) = v {
                at_least(name, v, 1)?;
            }
        }
        if self.is_vit() {
            let (dim, heads) = self.vit_spec().dim_and_heads();
            if dim % heads != 0 {
                return Err(ConfigError::invalid("embed_dim", dim, &format!("a multiple of num_heads ({heads})")));
            }
            for (name, size) in [("global_crop_size", self.global_crop_size), ("local_crop_size", self.local_crop_size)] {
                if size % self.patch_size != 0 {
                    return Err(ConfigError::invalid(name, size, &format!("a multiple of --patch_size ({})", self.patch_size)));
                }
            }
        }
        at_least("out_dim", self.out_dim, 1)?;
        at_least("head_hidden_dim", self.head_hidden_dim, 1)?;
        at_least("head_bottleneck_dim", self.head_bottleneck_dim, 1)?;
        unit_interval("momentum_teacher", self.momentum_teacher)?;
        positive("warmup_teacher_temp", self.warmup_teacher_temp)?;
        positive("teacher_temp", self.teacher_temp)?;
        at_least("warmup_teacher_temp_epochs", self.warmup_teacher_temp_epochs, 0)?;
        non_negative("weight_decay", self.weight_decay)?;
        non_negative("weight_decay_end", self.weight_decay_end)?;
        non_negative("clip_grad", self.clip_grad)?;
        at_least("batch_size_per_gpu", self.batch_size_per_gpu, 1)?;
        at_least("epochs", self.epochs, 1)?;
        at_least("freeze_last_layer", self.freeze_last_layer, 0)?;
        positive("lr", self.lr)?;
        at_least("warmup_epochs", self.warmup_epochs, 0)?;
        // Warm-ups longer than the run are allowed (the reference's own README runs 2 epochs with
        // the default 10 warm-up epochs); the schedules then end inside the warm-up.
        non_negative("min_lr", self.min_lr)?;
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return Err(ConfigError::invalid("drop_path_rate", self.drop_path_rate, "a number in [0, 1)"));
        }
        crop_scale("global_crops_scale", self.global_crops_scale)?;
        crop_scale("local_crops_scale", self.local_crops_scale)?;
        let (lo, hi) = self.blur_sigma;
        if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo <= hi && hi <= 100.0) {
            return Err(ConfigError::invalid(
                "blur_sigma",
                format!("{lo} {hi}"),
                "two numbers MIN MAX with 0 <= MIN <= MAX <= 100 (0 0: no blur)",
            ));
        }
        at_least("local_crops_number", self.local_crops_number, 0)?;
        at_least("global_crop_size", self.global_crop_size, 1)?;
        at_least("local_crop_size", self.local_crop_size, 1)?;
        at_least("saveckp_freq", self.saveckp_freq, 0)?;
        at_least("print_freq", self.print_freq, 1)?;
        at_least("eval_knn_every", self.eval_knn_every, 0)?;
        if self.num_workers == 0 {
            return Err(ConfigError::invalid("num_workers", 0, "an integer >= 1"));
        }
        parse_device(&self.device)?;
        Ok(())
    }
}

/// Device requested on the command line, before we know what libtorch sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    Auto,
    Cpu,
    Cuda(usize),
}

/// The device a `--device` value names, falling back from `auto` to the CPU; a CUDA index past the
/// devices libtorch sees is an error naming the setting. Training and evaluation both resolve here.
pub fn resolve_device(s: &str) -> Result<tch::Device, ConfigError> {
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
                return Err(ConfigError::invalid("device", format!("cuda:{i}"), &format!("a CUDA device libtorch sees ({n} here)")));
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
        let e = err_of(|c| c.lr = -0.1);
        assert!(e.contains("--lr") && e.contains("> 0"), "{e}");
    }

    #[test]
    fn unknown_arch_lists_the_choices() {
        let e = TrainConfig::from_toml_str("arch = \"nonsense\"").unwrap_err().to_string();
        assert!(e.contains("arch") && e.contains("vit_small") && e.contains("resnet50"), "{e}");
    }

    #[test]
    fn crop_scale_outside_unit_interval() {
        let e = err_of(|c| c.global_crops_scale = (0.4, 1.5));
        assert!(e.contains("--global_crops_scale"), "{e}");
        let e = err_of(|c| c.local_crops_scale = (0.0, 0.4));
        assert!(e.contains("--local_crops_scale"), "{e}");
        let e = err_of(|c| c.local_crops_scale = (0.5, 0.4));
        assert!(e.contains("MIN <= MAX"), "{e}");
        let e = err_of(|c| c.blur_sigma = (2.0, 1.0));
        assert!(e.contains("--blur_sigma"), "{e}");
        let e = err_of(|c| c.blur_sigma = (-1.0, 1.0));
        assert!(e.contains("--blur_sigma"), "{e}");
        let mut off = TrainConfig::default();
        off.blur_sigma = (0.0, 0.0);
        assert!(off.validate().is_ok());
    }

    #[test]
    fn crop_size_must_divide_by_patch() {
        let e = err_of(|c| c.global_crop_size = 30);
        assert!(e.contains("--global_crop_size") && e.contains("patch_size"), "{e}");
    }

    #[test]
    fn embed_dim_must_divide_by_heads() {
        let e = err_of(|c| {
            c.embed_dim = Some(100);
            c.num_heads = Some(3);
        });
        assert!(e.contains("--embed_dim"), "{e}");
    }

    #[test]
    fn devices() {
        assert_eq!(parse_device("cuda:1").unwrap(), DeviceRequest::Cuda(1));
        assert!(parse_device("gpu").unwrap_err().to_string().contains("--device"));
    }
}
