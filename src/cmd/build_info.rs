//! What `dino --version` says beside the version: which backends this binary has built in and
//! which load at run time, so a person learns before renting a GPU machine, not when a job fails.

use crate::model::cuda_backend::CudaBackend;

/// One backend's line: its name and what became of it here.
struct Backend {
    name: &'static str,
    state: String,
}

fn gloo() -> Backend {
    let state = if crate::dist::AVAILABLE {
        "yes: multi-process training on CPUs (--nproc_per_node, torchrun, srun)".to_string()
    } else {
        "no: built with --no-default-features; rebuild with `make release` for multi-process training".to_string()
    };
    Backend { name: "Gloo", state }
}

fn nccl(cuda: &CudaBackend) -> Backend {
    let state = if crate::dist::nccl::AVAILABLE {
        match cuda {
            CudaBackend::Loaded { .. } => "yes: multi-process training on GPUs".to_string(),
            _ => "yes: multi-process training on GPUs (once the CUDA backend loads)".to_string(),
        }
    } else if matches!(cuda, CudaBackend::NotBuilt) {
        "no: this libtorch is a CPU build".to_string()
    } else if cfg!(feature = "nccl") {
        "no: the libtorch this was built with had no CUDA".to_string()
    } else {
        "no: built without the nccl feature (--no-default-features)".to_string()
    };
    Backend { name: "NCCL", state }
}

fn cuda_line(cuda: &CudaBackend) -> Backend {
    let text = cuda.describe();
    // describe() starts with the backend's name, which the line already shows.
    let state = text.strip_prefix("CUDA backend ").map(str::to_string).unwrap_or(text);
    Backend { name: "CUDA backend", state }
}

fn cpu_bf16() -> Backend {
    let state = if !crate::model::autocast::AVAILABLE {
        "no: built without libtorch's headers (no autocast shim)".to_string()
    } else if crate::model::autocast::cpu_bf16_turned_off() {
        format!("off: {} is set", crate::model::autocast::NO_CPU_BF16_VAR)
    } else if crate::model::autocast::cpu_has_bf16() {
        "yes: this CPU computes bfloat16 (--use_fp16 trains in bf16 autocast)".to_string()
    } else {
        "no: this CPU has no bfloat16 instructions (AVX512-BF16, AMX or Arm BF16); float32 is faster here".to_string()
    };
    Backend { name: "CPU bf16", state }
}

/// The text of `dino --version` after the program's name.
pub fn long_version(cuda: &CudaBackend) -> String {
    let lib = env!("DINO_LIBTORCH_LIB");
    let mut out = format!("{}\nlibtorch      {} ({lib})\n", env!("CARGO_PKG_VERSION"), env!("DINO_LIBTORCH_VERSION"));
    for (section, backends) in [("built in", [gloo(), nccl(cuda)]), ("at run time", [cuda_line(cuda), cpu_bf16()])] {
        out.push_str(&format!("{section}:\n"));
        for b in backends {
            out.push_str(&format!("  {:<12} {}\n", b.name, b.state));
        }
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_backend_has_a_line_that_says_yes_or_why_not() {
        let text = long_version(&CudaBackend::NoDriver);
        for name in ["Gloo", "NCCL", "CUDA backend", "CPU bf16", "libtorch"] {
            let line = text.lines().find(|l| l.trim_start().starts_with(name)).unwrap_or_else(|| panic!("no {name} line:\n{text}"));
            assert!(line.len() > name.len() + 6, "{name} says nothing: {line}");
        }
        // A CPU libtorch has no NCCL to build, and says so rather than blaming the build.
        if !crate::dist::nccl::AVAILABLE {
            assert!(long_version(&CudaBackend::NotBuilt).contains("NCCL         no: this libtorch is a CPU build"));
        }
    }
}
