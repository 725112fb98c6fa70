//! libtorch's CUDA backend, loaded at run time and only where a GPU can be. Linked in, as tch does
//! it, libtorch_cuda and the CUDA libraries it pulls in (cuBLAS, cuDNN, cuFFT, NCCL, ...) cost
//! every `dino` process about 350 MB of memory and 0.3 s of CPU before `main`, on a machine with
//! no GPU too (measured: a program linked to libtorch_cpu alone peaks at 115 MB, with
//! libtorch_cuda at 469 MB). So `build.rs` leaves libtorch_cuda out of the link, and `load` opens
//! it from libtorch_cpu's folder (`dlopen`, global symbols, so its static initialisers register
//! the CUDA hooks libtorch_cpu asks) when an NVIDIA driver is present. It must run before
//! libtorch is first asked about CUDA (`tch::Cuda`, and `manual_seed` too): libtorch keeps the
//! first answer. `config::validate::resolve_device`, where every `--device` is resolved, and
//! `main` call it first.

use crate::files::ShowPath;
use std::ffi::CString;
use std::path::Path;
use std::sync::OnceLock;

/// What became of the CUDA backend in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CudaBackend {
    /// libtorch_cuda is loaded; the CUDA runtime version it was built with (13000: 13.0).
    Loaded { cuda_runtime: i64 },
    /// Not loaded: no NVIDIA driver here (`DINO_CUDA=1` loads it anyway).
    NoDriver,
    /// Not loaded: `DINO_CUDA=0`.
    Disabled,
    /// This libtorch has no CUDA backend (a CPU build).
    NotBuilt,
    /// Loading failed: the loader's message.
    Failed(String),
}

impl CudaBackend {
    pub fn describe(&self) -> String {
        match self {
            Self::Loaded { cuda_runtime } => format!("CUDA backend loaded (CUDA {}.{})", cuda_runtime / 1000, cuda_runtime % 1000 / 10),
            Self::NoDriver => format!(
                "CUDA backend not loaded: no NVIDIA driver here (no {}, no libcuda.so.1); DINO_CUDA=1 loads it anyway",
                DRIVER_FILES.join(", ")
            ),
            Self::Disabled => "CUDA backend not loaded: DINO_CUDA=0".into(),
            Self::NotBuilt => "CUDA backend not available: this libtorch is a CPU build".into(),
            Self::Failed(why) => format!("CUDA backend failed to load: {why}"),
        }
    }
}

/// Files an NVIDIA driver provides, one of which is there wherever CUDA can run: Linux (containers
/// given a GPU included) and WSL2's `/dev/dxg`. Failing them, the driver's library is looked for.
const DRIVER_FILES: [&str; 3] = ["/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/dxg"];

/// The libtorch library folder `build.rs` linked against (empty without libtorch at build time),
/// for when the running libtorch_cpu cannot be located.
const LIBTORCH_LIB: &str = env!("DINO_LIBTORCH_LIB");

static STATE: OnceLock<CudaBackend> = OnceLock::new();

/// Loads the backend the first time (see the module's comment); the same answer after.
pub fn load() -> &'static CudaBackend {
    STATE.get_or_init(|| match std::env::var("DINO_CUDA").as_deref() {
        Ok("0") => CudaBackend::Disabled,
        Ok("1") => open(),
        _ if driver_present() => open(),
        _ => CudaBackend::NoDriver,
    })
}

fn driver_present() -> bool {
    DRIVER_FILES.iter().any(|f| Path::new(f).exists()) || {
        // SAFETY: dlopen with a NUL-terminated name; the probe's handle is closed at once.
        let h = unsafe { libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) };
        if !h.is_null() {
            // SAFETY: `h` is a live handle from dlopen.
            unsafe { libc::dlclose(h) };
        }
        !h.is_null()
    }
}

/// The folder of the libtorch_cpu this process runs on, else the one it was built against.
fn libtorch_folder() -> std::path::PathBuf {
    let mut buf = vec![0u8; 4096];
    // SAFETY: fills `buf` (its length given) with a NUL-terminated path; 0 on success.
    let found = unsafe { ffi::dino_libtorch_cpu_file(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let file = std::ffi::CStr::from_bytes_until_nul(&buf).ok().map(|c| std::path::PathBuf::from(c.to_string_lossy().into_owned()));
    match (found, file.as_deref().and_then(Path::parent)) {
        (true, Some(dir)) => dir.to_path_buf(),
        _ => std::path::PathBuf::from(LIBTORCH_LIB),
    }
}

fn open() -> CudaBackend {
    let lib = libtorch_folder().join("libtorch_cuda.so");
    if !lib.exists() {
        return CudaBackend::NotBuilt;
    }
    let Ok(path) = CString::new(lib.as_os_str().as_encoded_bytes()) else {
        return CudaBackend::Failed(format!("{} is not a C string", lib.shown()));
    };
    // SAFETY: dlopen takes a NUL-terminated path; the handle is kept for the life of the process.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns the last error of this thread as a C string, or null.
        let why = unsafe { libc::dlerror() };
        let why = if why.is_null() {
            "unknown error".into()
        } else {
            // SAFETY: non-null dlerror results are NUL-terminated.
            unsafe { std::ffi::CStr::from_ptr(why) }.to_string_lossy().into_owned()
        };
        return CudaBackend::Failed(format!("{}: {why}", lib.shown()));
    }
    match runtime_version() {
        v if v > 0 => CudaBackend::Loaded { cuda_runtime: v },
        // Also what a CUDA question asked before `load` leaves behind: libtorch kept the stub.
        _ => CudaBackend::Failed(format!("{} loaded, but libtorch still answers with its CUDA stub", lib.shown())),
    }
}

/// The CUDA runtime version of the registered CUDA hooks, -1 while they are libtorch's stub.
pub(crate) fn runtime_version() -> i64 {
    // SAFETY: a C function of cuda_backend.cpp taking nothing; it catches every C++ exception.
    unsafe { ffi::dino_cuda_runtime_version() as i64 }
}

#[cfg(dino_autocast)]
mod ffi {
    extern "C" {
        pub fn dino_cuda_runtime_version() -> std::ffi::c_long;
        pub fn dino_libtorch_cpu_file(buf: *mut std::ffi::c_char, len: usize) -> std::ffi::c_int;
    }
}

/// Without libtorch's location at build time (so no C++ shims), there is no backend to probe.
#[cfg(not(dino_autocast))]
mod ffi {
    pub unsafe fn dino_cuda_runtime_version() -> std::ffi::c_long {
        -1
    }
    pub unsafe fn dino_libtorch_cpu_file(_buf: *mut std::ffi::c_char, _len: usize) -> std::ffi::c_int {
        1
    }
}
