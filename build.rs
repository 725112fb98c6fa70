//! Embeds the libtorch library folder as an rpath, so `dino` starts without LD_LIBRARY_PATH, and
//! keeps libtorch_cuda linked even though no symbol of it is referenced directly: without it the
//! linker's --as-needed drops the library and libtorch never registers its CUDA backend.
//!
//! Also compiles the c10d shim (`src/dist/shim.cpp`, multi-process training) when Gloo's headers
//! are installed (`libgloo-dev`, or `GLOO_INCLUDE`), and sets `cfg(dino_dist)`; without them
//! `dino` builds and trains single-process, and asking for several processes says what to install.
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=GLOO_INCLUDE");
    println!("cargo:rerun-if-changed=src/dist/shim.cpp");
    println!("cargo::rustc-check-cfg=cfg(dino_dist)");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else { return };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    if Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
    let gloo = std::env::var("GLOO_INCLUDE").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("/usr/include"));
    // Installing the headers later creates gloo/ there, which changes the folder: rebuild then.
    println!("cargo:rerun-if-changed={}", gloo.display());
    if !gloo.join("gloo/algorithm.h").exists() {
        println!("cargo:warning=Gloo headers not found (apt-get install libgloo-dev, or set GLOO_INCLUDE): building without multi-process training");
        return;
    }
    let include = Path::new(&lib).join("../include");
    cc::Build::new()
        .cpp(true)
        .file("src/dist/shim.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include(&gloo)
        .define("USE_C10D_GLOO", None)
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .flag("-std=c++17")
        .warnings(false)
        .compile("dino_dist");
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    println!("cargo:rustc-cfg=dino_dist");
}
