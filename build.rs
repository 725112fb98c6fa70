//! Embeds the libtorch library folder as an rpath, so `dino` starts without LD_LIBRARY_PATH, and
//! keeps libtorch_cuda linked even though no symbol of it is referenced directly: without it the
//! linker's --as-needed drops the library and libtorch never registers its CUDA backend.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}
