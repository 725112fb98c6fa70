//! Embeds the libtorch library folder as an rpath, so `dino` starts without LD_LIBRARY_PATH, and
//! keeps libtorch_cuda linked even though no symbol of it is referenced directly: without it the
//! linker's --as-needed drops the library and libtorch never registers its CUDA backend.
//!
//! Also compiles the c10d shim (`src/dist/shim.cpp`, multi-process training) when the `dist`
//! feature is on (default) and Gloo's headers are installed (`libgloo-dev`, or `GLOO_INCLUDE`),
//! and sets `cfg(dino_dist)`; without them `dino` builds and trains single-process, and asking for
//! several processes says what to install. The NCCL half is compiled in too when the NCCL and CUDA
//! headers of the `nvidia-*` wheels are there (`scripts/setup-test-tools.sh` adds the two that
//! libtorch's wheel lacks).
//!
//! Always compiles the autocast shim (`src/model/autocast.cpp`: CPU bfloat16 and CUDA bfloat16
//! autocast, which tch cannot switch) and sets `cfg(dino_autocast)`; it needs only libtorch's own
//! headers.
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=GLOO_INCLUDE");
    println!("cargo:rerun-if-changed=src/dist/shim.cpp");
    println!("cargo:rerun-if-changed=src/model/autocast.cpp");
    println!("cargo:rerun-if-changed=src/shim_guard.hpp");
    println!("cargo::rustc-check-cfg=cfg(dino_dist)");
    println!("cargo::rustc-check-cfg=cfg(dino_autocast)");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else { return };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
    compile_autocast(Path::new(&lib));
    if std::env::var_os("CARGO_FEATURE_DIST").is_none() {
        return;
    }
    let gloo = std::env::var("GLOO_INCLUDE").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("/usr/include"));
    // Installing the headers later creates gloo/ there, which changes the folder: rebuild then.
    println!("cargo:rerun-if-changed={}", gloo.display());
    if !gloo.join("gloo/algorithm.h").exists() {
        println!("cargo:warning=Gloo headers not found (apt-get install libgloo-dev, or set GLOO_INCLUDE): building without multi-process training");
        return;
    }
    let include = Path::new(&lib).join("../include");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("src/dist/shim.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include(&gloo)
        .define("USE_C10D_GLOO", None)
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .flag("-std=c++17")
        .warnings(false);
    if let Some(dirs) = nccl_includes(Path::new(&lib)) {
        build.define("USE_C10D_NCCL", None);
        for d in dirs {
            build.include(d);
        }
    }
    build.compile("dino_dist");
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-cfg=dino_dist");
}

/// The autocast shim: libtorch's headers are all it needs.
fn compile_autocast(lib: &Path) {
    let include = lib.join("../include");
    cc::Build::new()
        .cpp(true)
        .file("src/model/autocast.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .flag("-std=c++17")
        .warnings(false)
        .compile("dino_autocast");
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-cfg=dino_autocast");
}

/// NCCL's and the CUDA runtime's headers: the `nvidia-*` wheels beside libtorch's, plus the CUDA
/// `crt`/`cccl` header wheels in the cache (`DINO_CUDA_HEADERS` overrides). None: no NCCL.
fn nccl_includes(lib: &Path) -> Option<Vec<PathBuf>> {
    let nvidia = lib.join("../../nvidia");
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let extra = std::env::var_os("DINO_CUDA_HEADERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache.join("dino-tui/cuda-headers-13.0/nvidia/cu13/include"));
    println!("cargo:rerun-if-env-changed=DINO_CUDA_HEADERS");
    println!("cargo:rerun-if-changed={}", extra.display());
    let dirs = vec![nvidia.join("nccl/include"), nvidia.join("cu13/include"), extra.clone(), extra.join("cccl")];
    let present =
        nvidia.join("nccl/include/nccl.h").exists() && extra.join("crt/host_config.h").exists() && lib.join("libtorch_cuda.so").exists();
    present.then_some(dirs)
}
