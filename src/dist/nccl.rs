//! The NCCL process group's constructor, from `nccl.cpp`'s shared object: build.rs compiles it
//! apart because it needs libtorch_cuda, which the `dino` binary does not link (see
//! `model::cuda_backend`). The object is embedded in the binary, so a copied `dino` keeps NCCL,
//! and opened from an anonymous in-memory file (`memfd_create`), so nothing is written to disk.

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
        // has opened libtorch_cuda already; the object's own dependency on it finds it loaded.
        OPENED.get_or_init(open).clone().map(|a| a as *mut c_void).map_err(DistError::C10d)
    }

    fn open() -> Result<usize, String> {
        let name = c"dino-nccl";
        // SAFETY: memfd_create takes a NUL-terminated name and flags; it returns a new descriptor.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(format!("memfd_create: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just created and is owned by this File from here on.
        let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
        file.write_all(OBJECT).map_err(|e| format!("writing the NCCL object to memory: {e}"))?;
        let path = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(|e| e.to_string())?;
        // SAFETY: dlopen takes a NUL-terminated path; the handle stays open for the process's life.
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            return Err(format!("opening the NCCL object: {}", last_dl_error()));
        }
        // SAFETY: dlsym on a live handle with a NUL-terminated symbol name.
        let f = unsafe { libc::dlsym(handle, c"dino_nccl_new".as_ptr()) };
        if f.is_null() {
            return Err(format!("the NCCL object has no dino_nccl_new: {}", last_dl_error()));
        }
        Ok(f as usize)
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
