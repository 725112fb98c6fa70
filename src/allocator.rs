//! The process's memory allocator: jemalloc, for Rust and, through the exported `malloc` family,
//! for libtorch's tensors too (its CPU allocator calls `posix_memalign`).
//!
//! Why not glibc's malloc: a DINO step allocates and frees the same activations and gradients
//! every iteration, tens of tensors of 1-10 MB mixed with small ones, and glibc's heap keeps the
//! holes this leaves (a third of the step's resident memory was free heap between steps). Side by
//! side on the same binary (docs/benchmarks.md): vit_tiny/4 peak RSS 1.55 GB against 1.89-1.92 GB,
//! the ResNet cifar-quick step 560 against 590-610 MB, and that step 5-8 % faster. jemalloc's
//! decay is off (.cargo/config.toml): handing freed pages back to the kernel every few seconds
//! made the ResNet step 20-30 % slower, since the next step faults them straight back in.
//! glibc's own knobs (mmap and trim thresholds, one arena, `malloc_trim`) were measured too and
//! each cost 12-35 % speed for a lower peak.
//!
//! With decay off, freed memory stays with the process until [`release_free_memory`]: the
//! evaluation worker calls it when an evaluation ends (its features and batches are gone by
//! then, and the next training step faults back only what it uses). tests/allocator.rs checks
//! all of this in a process of its own (a purge by a concurrent test would upset the counts).

#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's `mallctl` read of a value of type `T` (`None`: no such name, or not jemalloc).
#[cfg(not(target_env = "msvc"))]
fn read<T: Copy>(name: &std::ffi::CStr, mut value: T) -> Option<T> {
    let mut len = std::mem::size_of::<T>();
    // SAFETY: `value` is a `T` of `len` bytes that jemalloc writes; no new value is passed.
    let rc = unsafe { tikv_jemalloc_sys::mallctl(name.as_ptr(), (&mut value as *mut T).cast(), &mut len, std::ptr::null_mut(), 0) };
    (rc == 0 && len == std::mem::size_of::<T>()).then_some(value)
}

/// Whether jemalloc owns the memory at `ptr` (`arenas.lookup`, which fails on a pointer that
/// another allocator handed out).
#[cfg(not(target_env = "msvc"))]
pub fn owns(ptr: *const std::ffi::c_void) -> bool {
    if ptr.is_null() {
        return false; // jemalloc's lookup of address 0 faults instead of failing
    }
    let name = c"arenas.lookup";
    let mut arena: u32 = 0;
    let mut len = std::mem::size_of::<u32>();
    let mut p = ptr;
    // SAFETY: reads an arena index into `arena` for the pointer passed by value in `p`.
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            (&mut arena as *mut u32).cast(),
            &mut len,
            (&mut p as *mut *const std::ffi::c_void).cast(),
            std::mem::size_of::<*const std::ffi::c_void>(),
        )
    };
    rc == 0
}

/// Hands the free pages of every arena back to the kernel (`arena.<all>.purge`). For after a
/// burst of allocation that training will not repeat soon; a step re-faults what it needs.
#[cfg(not(target_env = "msvc"))]
pub fn release_free_memory() {
    // MALLCTL_ARENAS_ALL is 4096 in jemalloc 5.
    let name = c"arena.4096.purge";
    // SAFETY: a command without arguments or results.
    let _ = unsafe { tikv_jemalloc_sys::mallctl(name.as_ptr(), std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut(), 0) };
}

#[cfg(target_env = "msvc")]
pub fn release_free_memory() {}

/// Bytes in dirty (freed, still resident) pages over all arenas, as of now.
#[cfg(not(target_env = "msvc"))]
pub fn dirty_bytes() -> Option<usize> {
    let name = c"epoch";
    let mut epoch: u64 = 1;
    // SAFETY: writing a u64 to `epoch` refreshes the statistics read below.
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            (&mut epoch as *mut u64).cast(),
            std::mem::size_of::<u64>(),
        )
    };
    if rc != 0 {
        return None;
    }
    let pages = read(c"stats.arenas.4096.pdirty", 0usize)?;
    Some(pages * read(c"arenas.page", 0usize)?)
}

/// jemalloc's decay of dirty pages in milliseconds (-1: kept), as the process runs with it.
#[cfg(not(target_env = "msvc"))]
pub fn dirty_decay_ms() -> Option<isize> {
    read(c"opt.dirty_decay_ms", 0isize)
}
