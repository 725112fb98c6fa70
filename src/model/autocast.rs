//! Mixed precision for the forward passes: libtorch's autocast on the CPU (bfloat16) and on CUDA
//! (float16 or bfloat16), through the C++ shim `autocast.cpp`. tch's own `autocast` switches
//! CUDA's only and only to float16, so CPU bfloat16 (about 3x faster ViT steps on CPUs with
//! AVX512-BF16 or AMX) is reachable only through the shim. The state is per thread, as libtorch's:
//! a guard entered on the trainer's thread is left on the same thread.

use serde::{Deserialize, Serialize};
use std::os::raw::c_char;

/// The reduced precision autocast runs matrix products in (`--amp_dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AmpDtype {
    /// bfloat16: float32's range, so no loss scaling; the CPU always uses it.
    Bf16,
    /// float16, the reference's CUDA mixed precision: needs dynamic loss scaling.
    #[default]
    Fp16,
}

impl AmpDtype {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "bf16" | "bfloat16" => Some(Self::Bf16),
            "fp16" | "float16" | "half" => Some(Self::Fp16),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bf16 => "bf16",
            Self::Fp16 => "fp16",
        }
    }
}

impl std::fmt::Display for AmpDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Autocast on one device type in one dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Autocast {
    pub cuda: bool,
    pub dtype: AmpDtype,
}

#[derive(Debug, thiserror::Error)]
pub enum AutocastError {
    #[error("autocast ({0}): {1}")]
    Shim(&'static str, String),
    #[error("this dino was built without the autocast shim (src/model/autocast.cpp): CPU bfloat16 needs it")]
    NotBuilt,
}

/// Whether this build has the autocast shim.
pub const AVAILABLE: bool = cfg!(dino_autocast);

/// The variable that makes `cpu_has_bf16` answer no whatever the CPU (to compare, or to work
/// around a bad bf16 kernel).
pub const NO_CPU_BF16_VAR: &str = "DINO_NO_CPU_BF16";

/// Whether `NO_CPU_BF16_VAR` is set.
pub fn cpu_bf16_turned_off() -> bool {
    std::env::var_os(NO_CPU_BF16_VAR).is_some()
}

/// Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX on x86, BF16 on Arm). Without
/// it libtorch emulates bfloat16, slower than float32, so mixed precision is not worth it.
pub fn cpu_has_bf16() -> bool {
    if cpu_bf16_turned_off() {
        return false;
    }
    cpu_feature()
}

#[cfg(target_arch = "x86_64")]
fn cpu_feature() -> bool {
    std::arch::is_x86_feature_detected!("avx512bf16") || cpuinfo_flag("amx_bf16")
}

#[cfg(target_arch = "aarch64")]
fn cpu_feature() -> bool {
    std::arch::is_aarch64_feature_detected!("bf16")
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn cpu_feature() -> bool {
    false
}

/// AMX's flag, which std's feature detection does not name on stable Rust.
#[cfg(target_arch = "x86_64")]
fn cpuinfo_flag(flag: &str) -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|t| t.lines().filter(|l| l.starts_with("flags")).any(|l| l.split_whitespace().any(|w| w == flag)))
        .unwrap_or(false)
}

#[cfg(dino_autocast)]
extern "C" {
    fn dino_autocast_enter(device: i32, dtype: i32, prev_enabled: *mut i32, prev_dtype: *mut i32, err: *mut c_char, len: usize) -> i32;
    fn dino_autocast_exit(device: i32, prev_enabled: i32, prev_dtype: i32, err: *mut c_char, len: usize) -> i32;
    fn dino_autocast_is_enabled(device: i32) -> i32;
    fn dino_autocast_set_enabled(device: i32, enabled: i32) -> i32;
}

/// The error buffer the shims of this library (autocast.cpp, grads.cpp) fill through
/// `src/shim_guard.hpp`: its size, and the message it holds.
pub(super) const ERR_LEN: usize = 1024;

pub(super) fn message(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Autocast switched on until dropped; dropping restores the thread's previous state.
pub struct AutocastGuard {
    device: i32,
    prev_enabled: i32,
    prev_dtype: i32,
}

impl Autocast {
    fn codes(self) -> (i32, i32) {
        (i32::from(self.cuda), if self.dtype == AmpDtype::Fp16 { 1 } else { 0 })
    }

    /// Switches autocast on for this thread.
    pub fn enter(self) -> Result<AutocastGuard, AutocastError> {
        let (device, dtype) = self.codes();
        let (mut prev_enabled, mut prev_dtype) = (0, 0);
        let mut err: Vec<c_char> = vec![0; ERR_LEN];
        #[cfg(dino_autocast)]
        {
            // SAFETY: plain integers and a buffer of ERR_LEN bytes; the shim catches every C++ exception.
            let rc = unsafe { dino_autocast_enter(device, dtype, &mut prev_enabled, &mut prev_dtype, err.as_mut_ptr(), ERR_LEN) };
            if rc != 0 {
                return Err(AutocastError::Shim("enter", message(&err)));
            }
            Ok(AutocastGuard { device, prev_enabled, prev_dtype })
        }
        #[cfg(not(dino_autocast))]
        {
            let _ = (device, dtype, &mut prev_enabled, &mut prev_dtype, &mut err);
            Err(AutocastError::NotBuilt)
        }
    }

    /// `f` under autocast.
    pub fn run<T>(self, f: impl FnOnce() -> T) -> Result<T, AutocastError> {
        let _guard = self.enter()?;
        Ok(f())
    }
}

/// Whether autocast is on for the CPU (`cuda` false) or CUDA on this thread.
pub fn is_enabled(cuda: bool) -> bool {
    #[cfg(dino_autocast)]
    {
        // SAFETY: reads thread-local state.
        unsafe { dino_autocast_is_enabled(i32::from(cuda)) != 0 }
    }
    #[cfg(not(dino_autocast))]
    {
        let _ = cuda;
        false
    }
}

/// `f` with autocast off for the CPU (`cuda` false) or CUDA on this thread, whatever region it
/// runs in: for an op whose float32 inputs must stay float32. Its backward runs in float32 too
/// (autograd replays the dtypes of the forward).
pub fn suspended<T>(cuda: bool, f: impl FnOnce() -> T) -> T {
    #[cfg(dino_autocast)]
    {
        struct Restore(i32, i32);
        impl Drop for Restore {
            fn drop(&mut self) {
                // SAFETY: flips a thread-local flag.
                unsafe { dino_autocast_set_enabled(self.0, self.1) };
            }
        }
        let device = i32::from(cuda);
        // SAFETY: flips a thread-local flag.
        let _restore = Restore(device, unsafe { dino_autocast_set_enabled(device, 0) });
        f()
    }
    #[cfg(not(dino_autocast))]
    {
        let _ = cuda;
        f()
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        #[cfg(dino_autocast)]
        {
            let mut err: Vec<c_char> = vec![0; ERR_LEN];
            // SAFETY: as `enter`. Restoring cannot fail for the values `enter` saved; an error is
            // logged, a drop cannot return it.
            let rc = unsafe { dino_autocast_exit(self.device, self.prev_enabled, self.prev_dtype, err.as_mut_ptr(), ERR_LEN) };
            if rc != 0 {
                tracing::warn!("leaving autocast: {}", message(&err));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    #[test]
    fn cpu_bf16_autocast_runs_matmuls_in_bf16_and_restores_the_state() {
        if !AVAILABLE {
            eprintln!("SKIPPED: built without the autocast shim");
            return;
        }
        let a = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([8, 3], (Kind::Float, Device::Cpu));
        let ac = Autocast { cuda: false, dtype: AmpDtype::Bf16 };
        let (kind, inner) = ac.run(|| (a.matmul(&b).kind(), is_enabled(false))).unwrap();
        assert_eq!(kind, Kind::BFloat16);
        assert!(inner);
        assert!(!is_enabled(false), "guard restores the previous state");
        assert_eq!(a.matmul(&b).kind(), Kind::Float);
        // Nested guards: the inner exit leaves the outer one on.
        let outer = ac.enter().unwrap();
        ac.run(|| ()).unwrap();
        assert!(is_enabled(false));
        drop(outer);
        assert!(!is_enabled(false));
    }

    #[test]
    fn suspended_autocast_runs_float32_and_comes_back_on() {
        if !AVAILABLE {
            eprintln!("SKIPPED: built without the autocast shim");
            return;
        }
        let a = Tensor::randn([4, 8], (Kind::Float, Device::Cpu));
        let ac = Autocast { cuda: false, dtype: AmpDtype::Bf16 };
        let (inside, after) = ac.run(|| (suspended(false, || a.matmul(&a.tr()).kind()), a.matmul(&a.tr()).kind())).unwrap();
        assert_eq!((inside, after), (Kind::Float, Kind::BFloat16));
        assert!(!suspended(false, || is_enabled(false)));
        assert!(!is_enabled(false), "suspending outside a region leaves autocast off");
    }

    #[test]
    fn dtype_names() {
        assert_eq!(AmpDtype::parse("bf16"), Some(AmpDtype::Bf16));
        assert_eq!(AmpDtype::parse("fp16"), Some(AmpDtype::Fp16));
        assert_eq!(AmpDtype::parse("fp8"), None);
        assert_eq!(AmpDtype::default().to_string(), "fp16");
    }
}
