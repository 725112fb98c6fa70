//! Embeds the libtorch library folder as an rpath, so `dino` starts without LD_LIBRARY_PATH, and
//! hands it to the code as `DINO_LIBTORCH_LIB`. libtorch_cuda is left out of the link (no symbol
//! of it is referenced, and the linker's --as-needed drops what torch-sys asks for): it costs
//! every process ~350 MB and 0.3 s at start, GPU or not, so `src/model/cuda_backend.rs` loads it
//! at run time where there is a driver.
//!
//! Also compiles the c10d shim (`src/dist/shim.cpp`, multi-process training on Gloo) when the
//! `dist` feature is on (default), against the Gloo headers vendored in `third_party/gloo`
//! (`GLOO_INCLUDE` names others), and sets `cfg(dino_dist)`. With the `nccl` feature (default)
//! and a libtorch that has CUDA (`libtorch_cuda.so`), the NCCL process group (`src/dist/nccl.cpp`)
//! becomes a shared object of its own, `DINO_NCCL_SO`, that `src/dist/nccl.rs` embeds and opens
//! when asked for, and sets `cfg(dino_nccl)`; it needs the NCCL and CUDA headers of the `nvidia-*`
//! wheels, which `scripts/setup-libtorch.sh` installs beside libtorch. A backend that was asked
//! for and cannot be built stops the build with the reason; leaving it out takes
//! `--no-default-features` (then `--features dist` for Gloo alone). A CPU-only libtorch has no
//! NCCL to build: that is said by `dino --version`, not an error.
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
    println!("cargo:rerun-if-changed=third_party/gloo");
    println!("cargo::rustc-check-cfg=cfg(dino_dist)");
    println!("cargo::rustc-check-cfg=cfg(dino_autocast)");
    println!("cargo::rustc-check-cfg=cfg(dino_nccl)");
    println!("cargo:rerun-if-changed=src/model/cuda_backend.cpp");
    println!("cargo:rerun-if-changed=src/dist/nccl.cpp");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").unwrap_or_default();
    println!("cargo:rustc-env=DINO_LIBTORCH_LIB={lib}");
    println!("cargo:rustc-env=DINO_LIBTORCH_VERSION={}", libtorch_version(Path::new(&lib)));
    if lib.is_empty() {
        return;
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    compile_autocast(Path::new(&lib));
    if std::env::var_os("CARGO_FEATURE_DIST").is_none() {
        return;
    }
    let gloo = std::env::var("GLOO_INCLUDE").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("third_party/gloo/include"));
    if !gloo.join("gloo/algorithm.h").exists() {
        stop(&format!(
            "Gloo's headers are not in {} (GLOO_INCLUDE, or the vendored third_party/gloo/include). \
             Restore them (git checkout third_party/gloo, or bash scripts/vendor-gloo-headers.sh), \
             or build without multi-process training: cargo build --no-default-features",
            gloo.display()
        ));
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
    if std::env::var_os("CARGO_FEATURE_NCCL").is_some() && Path::new(&lib).join("libtorch_cuda.so").exists() {
        match nccl_includes(Path::new(&lib)) {
            Ok(dirs) => compile_nccl(&build, Path::new(&lib), &dirs),
            Err(missing) => stop(&format!(
                "this libtorch has CUDA, but the headers NCCL needs are missing: {missing}. \
                 scripts/setup-libtorch.sh installs them (make setup); DINO_CUDA_HEADERS names another folder; \
                 or build without NCCL: cargo build --no-default-features --features dist"
            )),
        }
    }
    if let Err(e) = build.try_compile("dino_dist") {
        stop(&format!(
            "compiling the c10d shim (src/dist/shim.cpp) failed: {e}. \
             Build without multi-process training only if you mean to: cargo build --no-default-features"
        ));
    }
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-cfg=dino_dist");
}

/// Ends the build with `why` as its error, not a warning lost in the scroll.
fn stop(why: &str) -> ! {
    eprintln!("error: {why}");
    println!("cargo::error={why}");
    std::process::exit(1);
}

/// libtorch's version from its `version.py` (the wheel's) or `build-version` (the zip's), for
/// `dino --version`; "unknown" otherwise.
fn libtorch_version(lib: &Path) -> String {
    let root = lib.parent().unwrap_or(lib);
    let from_py = std::fs::read_to_string(root.join("version.py")).ok().and_then(|s| {
        s.lines().find_map(|l| l.strip_prefix("__version__ = ").map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_string()))
    });
    let from_zip = || std::fs::read_to_string(root.join("build-version")).ok().map(|s| s.trim().to_string());
    from_py.or_else(from_zip).unwrap_or_else(|| "unknown".into())
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
            let first: Vec<&str> = err.lines().filter(|l| l.contains("error")).take(5).collect();
            stop(&format!(
                "compiling src/dist/nccl.cpp failed ({}): {}. Build without NCCL only if you mean to: \
                 cargo build --no-default-features --features dist",
                o.status,
                first.join(" | ")
            ));
        }
        Err(e) => stop(&format!("cannot run the C++ compiler for src/dist/nccl.cpp: {e}")),
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
/// `crt`/`cccl` header wheels that `scripts/setup-libtorch.sh` installs into the cache
/// (`DINO_CUDA_HEADERS` overrides). Err names what is missing.
fn nccl_includes(lib: &Path) -> Result<Vec<PathBuf>, String> {
    let nvidia = lib.join("../../nvidia");
    println!("cargo:rerun-if-env-changed=DINO_CUDA_HEADERS");
    let extra = match std::env::var_os("DINO_CUDA_HEADERS") {
        Some(d) => PathBuf::from(d),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .ok_or("neither XDG_CACHE_HOME nor HOME is set, so the CUDA header cache cannot be found")?;
            cache.join("dino-tui/cuda-headers-13.0/nvidia/cu13/include")
        }
    };
    println!("cargo:rerun-if-changed={}", extra.display());
    let wanted = [nvidia.join("nccl/include/nccl.h"), extra.join("crt/host_config.h")];
    let missing: Vec<String> = wanted.iter().filter(|f| !f.exists()).map(|f| f.display().to_string()).collect();
    if !missing.is_empty() {
        return Err(missing.join(", "));
    }
    Ok(vec![nvidia.join("nccl/include"), nvidia.join("cu13/include"), extra.clone(), extra.join("cccl")])
}
