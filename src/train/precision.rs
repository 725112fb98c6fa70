//! Which precision a run's forward passes use, and the loss scaler float16 needs. One rule for
//! every device, so the CPU and CUDA take the same step path: `use_fp16` asks for mixed precision;
//! CUDA runs autocast in `amp_dtype` (float16 with dynamic loss scaling, as the reference, or
//! bfloat16 without), a CPU with bfloat16 instructions runs bfloat16 autocast (float32's range:
//! no scaling), anything else runs float32 and says why once.

use super::optim::Optimizer;
use crate::config::{AmpDtype, TrainConfig};
use crate::model::autocast::{self, Autocast};
use tch::Device;

/// The precision chosen, and a sentence for the user when `use_fp16` could not be honoured.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub autocast: Option<Autocast>,
    pub note: Option<String>,
}

impl Choice {
    /// How the run computes, for the start-up line: "bf16 autocast (CPU)", "float32", ...
    pub fn describe(&self) -> String {
        match self.autocast {
            Some(a) => format!("{} autocast ({})", a.dtype, if a.cuda { "CUDA" } else { "CPU" }),
            None => "float32".into(),
        }
    }
}

pub fn choose(c: &TrainConfig, device: Device) -> Choice {
    choose_with(c, device, autocast::AVAILABLE, autocast::cpu_has_bf16())
}

/// `choose` with the build's and the CPU's abilities given, so each case is testable anywhere.
pub fn choose_with(c: &TrainConfig, device: Device, shim: bool, cpu_bf16: bool) -> Choice {
    let fp32 = |note: &str| Choice { autocast: None, note: Some(note.to_string()) };
    if !c.optim.use_fp16 {
        return Choice { autocast: None, note: None };
    }
    if !shim {
        return fp32("use_fp16: this dino was built without the autocast shim (src/model/autocast.cpp); training in float32");
    }
    match device {
        Device::Cuda(_) => Choice { autocast: Some(Autocast { cuda: true, dtype: c.optim.amp_dtype }), note: None },
        Device::Cpu if cpu_bf16 => Choice { autocast: Some(Autocast { cuda: false, dtype: AmpDtype::Bf16 }), note: None },
        Device::Cpu => fp32(
            "use_fp16: this CPU has no bfloat16 instructions (AVX512-BF16, AMX or Arm BF16), where bfloat16 is slower than float32; training in float32",
        ),
        other => fp32(&format!("use_fp16: no mixed precision on {other:?}; training in float32")),
    }
}

/// Dynamic loss scaling for fp16 autocast, as `torch.cuda.amp.GradScaler`: grow the scale after
/// 2000 clean steps, halve it and skip the step on overflow.
#[derive(Debug, Clone)]
pub struct LossScaler {
    pub scale: f64,
    clean_steps: u32,
}

impl LossScaler {
    const GROWTH_INTERVAL: u32 = 2000;

    pub fn new() -> Self {
        Self { scale: 65536.0, clean_steps: 0 }
    }

    /// Divides gradients by the scale; false (and a smaller scale) when any is not finite.
    pub(super) fn unscale_and_check(&mut self, opt: &Optimizer) -> bool {
        let mut finite = true;
        tch::no_grad(|| {
            for (_, p) in opt.params() {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.g_mul_scalar_(1.0 / self.scale);
                    if finite && !bool::try_from(g.isfinite().all()).unwrap_or(false) {
                        finite = false;
                    }
                }
            }
        });
        if finite {
            self.clean_steps += 1;
            if self.clean_steps >= Self::GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.clean_steps = 0;
            }
        } else {
            self.scale /= 2.0;
            self.clean_steps = 0;
        }
        finite
    }
}

impl Default for LossScaler {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_per_device() {
        let mut c = TrainConfig::default();
        let bf16_cpu = Some(Autocast { cuda: false, dtype: AmpDtype::Bf16 });
        assert_eq!(choose_with(&c, Device::Cpu, true, true), Choice { autocast: bf16_cpu, note: None });
        let no_bf16 = choose_with(&c, Device::Cpu, true, false);
        assert!(no_bf16.autocast.is_none() && no_bf16.note.as_deref().is_some_and(|n| n.contains("no bfloat16")), "{no_bf16:?}");
        assert!(choose_with(&c, Device::Cpu, false, true).note.is_some_and(|n| n.contains("shim")));
        // CUDA: the reference's float16 unless asked for bfloat16; the CPU ignores amp_dtype.
        assert_eq!(choose_with(&c, Device::Cuda(0), true, false).autocast, Some(Autocast { cuda: true, dtype: AmpDtype::Fp16 }));
        c.optim.amp_dtype = AmpDtype::Bf16;
        assert_eq!(choose_with(&c, Device::Cuda(0), true, false).autocast, Some(Autocast { cuda: true, dtype: AmpDtype::Bf16 }));
        assert_eq!(choose_with(&c, Device::Cpu, true, true).describe(), "bf16 autocast (CPU)");
        c.optim.use_fp16 = false;
        assert_eq!(choose_with(&c, Device::Cpu, true, true), Choice { autocast: None, note: None });
        assert_eq!(choose_with(&c, Device::Cuda(0), true, true).describe(), "float32");
    }
}
