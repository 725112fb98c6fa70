//! Embeds the libtorch library folder as an rpath, so `dino` starts without LD_LIBRARY_PATH, and
//! hands it to the code as `DINO_LIBTORCH_LIB`. libtorch_cuda is left out of the link (no symbol
//! of it is referenced, and the linker's --as-needed drops what torch-sys asks for): it costs
//! every process ~350 MB and 0.3 s at start, GPU or not, so `src/model/cuda_backend.rs` loads it
//! at run time where there is a driver.
//!
//! Also compiles the c10d shim (`src/dist/shim.cpp`, multi-process training) when the `dist`
//! feature is on (default) and Gloo's headers are installed (`libgloo-dev`, or `GLOO_INCLUDE`),
//! and sets `cfg(dino_dist)`; without them `dino` builds and trains single-process, and asking for
//! several processes says what to install. When the NCCL and CUDA headers of the `nvidia-*`
//! wheels are there (`scripts/setup-test-tools.sh` adds the two that libtorch's wheel lacks),
//! the NCCL process group (`src/dist/nccl.cpp`, which needs libtorch_cuda) becomes a shared
//! object of its own, `DINO_NCCL_SO`, that `src/dist/nccl.rs` embeds and opens when asked for,
//! and sets `cfg(dino_nccl)`.
//!
//! Always compiles the autocast shim (`src/model/autocast.cpp`: CPU bfloat16 and CUDA bfloat16
//! autocast, which tch cannot switch), the CUDA-backend probe (`src/model/cuda_backend.cpp`) and
//! the gradient reset (`src/model/grads.cpp`), and sets `cfg(dino_autocast)`; they need only
//! libtorch's own headers.
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=GLOO_INCLUDE");
    println!("cargo:rerun-if-changed=src/dist/shim.cpp");
    println!("cargo:rerun-if-changed=src/model/autocast.cpp");
    println!("cargo:rerun-if-changed=src/model/grads.cpp");
    println!("cargo:rerun-if-changed=src/shim_guard.hpp");
    println!("cargo::rustc-check-cfg=cfg(dino_dist)");
    println!("cargo::rustc-check-cfg=cfg(dino_autocast)");
    println!("cargo::rustc-check-cfg=cfg(dino_nccl)");
    println!("cargo:rerun-if-changed=src/model/cuda_backend.cpp");
    println!("cargo:rerun-if-changed=src/dist/nccl.cpp");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").unwrap_or_default();
    println!("cargo:rustc-env=DINO_LIBTORCH_LIB={lib}");
    if lib.is_empty() {
        return;
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
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
        compile_nccl(&build, Path::new(&lib), &dirs);
    }
    build.compile("dino_dist");
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-cfg=dino_dist");
}

/// `src/dist/nccl.cpp` as a shared object linked to libtorch_cuda (`OUT_DIR/libdino_nccl.so`),
/// with the shim's compiler and flags plus the NCCL and CUDA headers; `DINO_NCCL_SO` names it.
fn compile_nccl(shim: &cc::Build, lib: &Path, includes: &[PathBuf]) {
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else { return };
    let so = out.join("libdino_nccl.so");
    let mut build = shim.clone();
    build.define("USE_C10D_NCCL", None).pic(true);
    for d in includes {
        build.include(d);
    }
    let mut cmd = build.get_compiler().to_command();
    cmd.arg("-shared").arg("src/dist/nccl.cpp").arg("-o").arg(&so).arg(format!("-L{}", lib.display()));
    cmd.args(["-ltorch_cuda", "-ltorch_cpu", "-lc10"]).arg(format!("-Wl,-rpath,{}", lib.display()));
    match cmd.output() {
        Ok(o) if o.status.success() => {
            println!("cargo:rustc-env=DINO_NCCL_SO={}", so.display());
            println!("cargo:rustc-cfg=dino_nccl");
        }
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            println!("cargo:warning=compiling src/dist/nccl.cpp failed ({}): building without NCCL", o.status);
            for line in err.lines().filter(|l| l.contains("error")).take(5) {
                println!("cargo:warning=  {line}");
            }
        }
        Err(e) => println!("cargo:warning=cannot run the C++ compiler for src/dist/nccl.cpp ({e}): building without NCCL"),
    }
}

/// The autocast shim, the CUDA-backend probe and the gradient reset: libtorch's headers are all
/// they need.
fn compile_autocast(lib: &Path) {
    let include = lib.join("../include");
    cc::Build::new()
        .cpp(true)
        .file("src/model/autocast.cpp")
        .file("src/model/cuda_backend.cpp")
        .file("src/model/grads.cpp")
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
