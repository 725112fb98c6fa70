//! The NCCL process group's constructor, from `nccl.cpp`'s shared object: build.rs compiles it
//! apart because it needs libtorch_cuda, which the `dino` binary does not link (see
//! `model::cuda_backend`). The object is embedded in the binary, so it cannot go missing beside
//! it, and opened from an anonymous in-memory file (`memfd_create`; a temporary file where the
//! kernel forbids executable ones).

use super::DistError;
use std::ffi::c_void;

/// Whether this build has the NCCL object (NCCL's and the CUDA runtime's headers at build time).
pub const AVAILABLE: bool = cfg!(dino_nccl);

/// `dino_nccl_new` of the embedded object, opened on first use; null where this build has no NCCL.
pub fn constructor() -> Result<*mut c_void, DistError> {
    imp::constructor()
}

#[cfg(dino_nccl)]
mod imp {
    use super::{c_void, DistError};
    use std::ffi::{CStr, CString};
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::sync::OnceLock;

    static OBJECT: &[u8] = include_bytes!(env!("DINO_NCCL_SO"));

    /// The address as an integer: raw pointers are not `Sync`.
    static OPENED: OnceLock<Result<usize, String>> = OnceLock::new();

    pub fn constructor() -> Result<*mut c_void, DistError> {
        // NCCL runs on CUDA tensors, so resolving the device (config::validate::resolve_device)
        // has opened libtorch_cuda already, before anything asked libtorch about CUDA; the
        // object's own dependency on it finds it loaded.
        OPENED.get_or_init(open).clone().map(|a| a as *mut c_void).map_err(DistError::C10d)
    }

    fn open() -> Result<usize, String> {
        let handle = match open_from_memory() {
            Ok(h) => h,
            // A kernel or policy that forbids executable memory files (vm.memfd_noexec, SELinux):
            // a temporary file, removed once open.
            Err(memory) => open_from_temp_file().map_err(|file| format!("{memory}; {file}"))?,
        };
        // SAFETY: dlsym on a live handle with a NUL-terminated symbol name.
        let f = unsafe { libc::dlsym(handle, c"dino_nccl_new".as_ptr()) };
        if f.is_null() {
            return Err(format!("the NCCL object has no dino_nccl_new: {}", last_dl_error()));
        }
        Ok(f as usize)
    }

    fn open_from_memory() -> Result<*mut c_void, String> {
        // MFD_EXEC (Linux 6.3) keeps the file executable where memfd_noexec would seal it; older
        // kernels refuse the flag, and their memory files are executable anyway.
        const MFD_EXEC: libc::c_uint = 0x10;
        let create = |flags| {
            // SAFETY: memfd_create takes a NUL-terminated name and flags; it returns a new descriptor.
            unsafe { libc::memfd_create(c"dino-nccl".as_ptr(), flags) }
        };
        let mut fd = create(libc::MFD_CLOEXEC | MFD_EXEC);
        if fd < 0 {
            fd = create(libc::MFD_CLOEXEC);
        }
        if fd < 0 {
            return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just created and is owned by this File from here on.
        let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
        file.write_all(OBJECT).map_err(|e| format!("writing the NCCL object to memory: {e}"))?;
        dl_open(&format!("/proc/self/fd/{}", file.as_raw_fd()))
    }

    fn open_from_temp_file() -> Result<*mut c_void, String> {
        let path = std::env::temp_dir().join(format!("dino-nccl-{}.so", std::process::id()));
        std::fs::write(&path, OBJECT).map_err(|e| format!("writing {}: {e}", path.display()))?;
        let opened = dl_open(&path.to_string_lossy());
        let _ = std::fs::remove_file(&path);
        opened
    }

    fn dl_open(path: &str) -> Result<*mut c_void, String> {
        let c = CString::new(path).map_err(|e| e.to_string())?;
        // SAFETY: dlopen takes a NUL-terminated path; the handle stays open for the process's life.
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(format!("opening the NCCL object from {path}: {}", last_dl_error()));
        }
        Ok(handle)
    }

    fn last_dl_error() -> String {
        // SAFETY: dlerror returns this thread's last error as a C string, or null.
        let e = unsafe { libc::dlerror() };
        if e.is_null() {
            return "unknown error".into();
        }
        // SAFETY: non-null dlerror results are NUL-terminated.
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

#[cfg(not(dino_nccl))]
mod imp {
    use super::{c_void, DistError};

    pub fn constructor() -> Result<*mut c_void, DistError> {
        Ok(std::ptr::null_mut())
    }
}
