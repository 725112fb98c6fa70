//! libtorch's CUDA backend, loaded at run time and only where a GPU can be. Linked in, as tch does
//! it, libtorch_cuda and the CUDA libraries it pulls in (cuBLAS, cuDNN, cuFFT, NCCL, ...) cost
//! every `dino` process about 350 MB of memory and 0.3 s of CPU before `main`, on a machine with
//! no GPU too (measured: a program linked to libtorch_cpu alone peaks at 115 MB, with
//! libtorch_cuda at 469 MB). So `build.rs` leaves libtorch_cuda out of the link, and `load` opens
//! it (`dlopen`, global symbols, so its static initialisers register the CUDA hooks libtorch_cpu
//! asks) when an NVIDIA driver is present. It must run before libtorch is first asked about CUDA:
//! libtorch keeps the first answer. `config::validate::resolve_device`, where every `--device` is resolved,
//! and `main` call it first.

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
            Self::NoDriver => format!("CUDA backend not loaded: no NVIDIA driver ({DRIVER_FILES}); DINO_CUDA=1 loads it anyway"),
            Self::Disabled => "CUDA backend not loaded: DINO_CUDA=0".into(),
            Self::NotBuilt => "CUDA backend not available: this libtorch is a CPU build".into(),
            Self::Failed(why) => format!("CUDA backend failed to load: {why}"),
        }
    }
}

/// Files an NVIDIA driver provides, one of which is there wherever CUDA can run (containers
/// given a GPU included).
const DRIVER_FILES: &str = "/proc/driver/nvidia/version, /dev/nvidiactl";

/// The libtorch library folder `build.rs` linked against (empty without libtorch at build time).
const LIBTORCH_LIB: &str = env!("DINO_LIBTORCH_LIB");

static STATE: OnceLock<CudaBackend> = OnceLock::new();

/// Loads the backend the first time (see the module's comment); the same answer after.
pub fn load() -> &'static CudaBackend {
    STATE.get_or_init(|| match std::env::var("DINO_CUDA").as_deref() {
        Ok("0") => CudaBackend::Disabled,
        Ok("1") => open(),
        _ if DRIVER_FILES.split(", ").any(|f| Path::new(f).exists()) => open(),
        _ => CudaBackend::NoDriver,
    })
}

fn open() -> CudaBackend {
    let lib = Path::new(LIBTORCH_LIB).join("libtorch_cuda.so");
    if !lib.exists() {
        return CudaBackend::NotBuilt;
    }
    let Ok(path) = CString::new(lib.as_os_str().as_encoded_bytes()) else {
        return CudaBackend::Failed(format!("{} is not a C string", lib.display()));
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
        return CudaBackend::Failed(format!("{}: {why}", lib.display()));
    }
    match runtime_version() {
        v if v > 0 => CudaBackend::Loaded { cuda_runtime: v },
        _ => CudaBackend::Failed(format!("{} loaded but registered no CUDA hooks", lib.display())),
    }
}

/// The CUDA runtime version of the registered CUDA hooks, -1 while they are libtorch's stub.
pub(crate) fn runtime_version() -> i64 {
    extern "C" {
        fn dino_cuda_runtime_version() -> std::ffi::c_long;
    }
    // SAFETY: a C function of cuda_backend.cpp taking nothing; it catches every C++ exception.
    unsafe { dino_cuda_runtime_version() as i64 }
}
