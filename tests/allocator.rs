//! The process's allocator (src/allocator.rs), in a test binary of its own: other tests running
//! beside these in one process (an evaluation worker purging, say) would change the counts.
#![cfg(not(target_env = "msvc"))]
// Test code: a failed assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use dino_tui::allocator::{dirty_bytes, dirty_decay_ms, owns, release_free_memory};
use tch::{Device, Kind, Tensor};

/// libtorch's tensor memory comes from jemalloc (the exported `malloc` family took over the
/// whole process, not only Rust's allocations), and the built-in options are in force.
#[test]
fn libtorch_allocates_from_jemalloc_with_decay_off() {
    let t = Tensor::zeros([1 << 20], (Kind::Float, Device::Cpu));
    assert!(owns(t.data_ptr()), "a libtorch tensor is not jemalloc's: malloc was not replaced");
    let boxed = Box::new([0u8; 64]);
    assert!(owns((&*boxed as *const [u8; 64]).cast()));
    assert!(!owns(std::ptr::null()));
    let stack = 0u64;
    assert!(!owns((&stack as *const u64).cast()), "arenas.lookup must refuse memory jemalloc does not own");
    if std::env::var_os("MALLOC_CONF").is_none() {
        assert_eq!(dirty_decay_ms(), Some(-1), "JEMALLOC_SYS_WITH_MALLOC_CONF (.cargo/config.toml) did not reach the build");
    }
}

/// Freed memory stays resident (decay is off) until `release_free_memory` hands it back.
/// The other test here allocates meanwhile (4 MB), hence margins of a quarter of the block.
#[test]
fn freed_memory_is_kept_until_released() {
    if std::env::var_os("MALLOC_CONF").is_some() {
        return;
    }
    const BLOCK: usize = 256 << 20;
    let t = Tensor::ones([(BLOCK / 4) as i64], (Kind::Float, Device::Cpu));
    drop(t);
    let before = dirty_bytes().unwrap();
    assert!(before >= BLOCK * 3 / 4, "a freed 256 MB tensor left {before} dirty bytes");
    release_free_memory();
    let after = dirty_bytes().unwrap();
    assert!(after + BLOCK * 3 / 4 <= before, "purge left {after} of {before} dirty bytes");
}
