//! Data-parallel training on libtorch's own distributed engine, c10d (Gloo on CPU, NCCL on CUDA),
//! through a small C++ shim (`shim.cpp`). Processes find each other the way PyTorch jobs do:
//! torchrun's variables (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`), or
//! SLURM's (`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`) when `RANK` is absent, as the reference's
//! `init_distributed_mode` does.
//!
//! Every collective walks tensors in one fixed order (the optimizer's parameter list): Gloo pairs
//! the n-th call of every rank, so a per-process order (a HashMap's) would mismatch sizes.

pub mod nccl;

use std::time::Duration;
use tch::Tensor;

/// Whether this build has the c10d shim: always, unless built with `--no-default-features`.
pub const AVAILABLE: bool = cfg!(dino_dist);

/// Gradients are all-reduced in buckets of about this many bytes, as DDP's default.
pub const BUCKET_BYTES: usize = 25 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error("distributed set-up: {0}")]
    Env(String),
    #[error("c10d: {0}")]
    C10d(String),
    #[error("this dino was built without multi-process support (cargo's --no-default-features); rebuild with the default features (make release)")]
    NotBuilt,
}

/// How long a collective waits for the other ranks (`DINO_DIST_TIMEOUT` seconds, default 1800 as
/// PyTorch's): a rank that dies usually fails its peers at once through the closed connection;
/// the timeout covers a hung one.
/// A value out of range (`1e19` used to overflow `Duration` and panic) is reported and the default
/// used.
pub fn timeout_from_env() -> Duration {
    let default = Duration::from_secs(1800);
    let Ok(v) = std::env::var("DINO_DIST_TIMEOUT") else {
        return default;
    };
    crate::human::parse_seconds("DINO_DIST_TIMEOUT", &v).unwrap_or_else(|e| {
        tracing::warn!("{e}; using {} s", default.as_secs());
        default
    })
}

/// Where this process stands in the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistEnv {
    pub rank: usize,
    pub world_size: usize,
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// torchrun's agent already hosts the store (`TORCHELASTIC_USE_AGENT_STORE=True`): every rank
    /// connects as a client.
    pub store_is_external: bool,
    /// A listening socket already bound to `master_port` for rank 0's store
    /// (`DINO_MASTER_LISTEN_FD`, set by `--nproc_per_node`): the port is held from the moment it
    /// is chosen, so no other job can take it in between.
    pub listen_fd: Option<i32>,
}

/// The variable through which `--nproc_per_node` hands rank 0 its store's listening socket.
pub const LISTEN_FD_VAR: &str = "DINO_MASTER_LISTEN_FD";

impl DistEnv {
    /// The job from the environment; `None` for a single process.
    pub fn from_env() -> Result<Option<Self>, DistError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, DistError> {
        let num = |k: &str| -> Result<Option<usize>, DistError> {
            var(k)
                .map(|v| v.trim().parse::<usize>().map_err(|_| DistError::Env(format!("{k}={v} is not a non-negative integer"))))
                .transpose()
        };
        // torchrun's variables make a job even with one process (`--nproc_per_node=1`, and the
        // GPU check's one-rank NCCL run); a single SLURM task is an ordinary run.
        let (rank, world, local) = match (num("RANK")?, num("WORLD_SIZE")?) {
            (Some(r), Some(w)) => (r, w, num("LOCAL_RANK")?.unwrap_or(r)),
            (Some(_), None) => return Err(DistError::Env("RANK is set but WORLD_SIZE is not".into())),
            (None, _) => match (num("SLURM_PROCID")?, num("SLURM_NTASKS")?) {
                (Some(r), Some(w)) if w > 1 => (r, w, num("SLURM_LOCALID")?.unwrap_or(0)),
                _ => return Ok(None),
            },
        };
        if world == 0 {
            return Err(DistError::Env("WORLD_SIZE=0".into()));
        }
        if rank >= world {
            return Err(DistError::Env(format!("RANK {rank} is not below WORLD_SIZE {world}")));
        }
        let master_addr = var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into());
        let port = var("MASTER_PORT").unwrap_or_else(|| "29500".into());
        let master_port = port.trim().parse().map_err(|_| DistError::Env(format!("MASTER_PORT={port} is not a port number")))?;
        let store_is_external = var("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let listen_fd = match var(LISTEN_FD_VAR) {
            Some(v) if rank == 0 => Some(v.trim().parse().map_err(|_| DistError::Env(format!("{LISTEN_FD_VAR}={v} is not a descriptor")))?),
            _ => None,
        };
        Ok(Some(Self { rank, world_size: world, local_rank: local, master_addr, master_port, store_is_external, listen_fd }))
    }

    pub fn is_main(&self) -> bool {
        self.rank == 0
    }
}

/// A c10d process group.
pub struct ProcessGroup {
    #[cfg_attr(not(dino_dist), allow(dead_code))]
    handle: *mut std::ffi::c_void,
    pub rank: usize,
    pub world_size: usize,
}

// The group is used from the trainer thread only; c10d's objects are not tied to the creating thread.
unsafe impl Send for ProcessGroup {}
unsafe impl Sync for ProcessGroup {}

#[cfg(dino_dist)]
mod ffi {
    use std::ffi::{c_char, c_int, c_void};
    extern "C" {
        pub fn dino_dist_new(
            backend: *const c_char,
            host: *const c_char,
            port: c_int,
            rank: c_int,
            world: c_int,
            store_is_external: c_int,
            listen_fd: c_int,
            timeout_ms: c_int,
            nccl_new: *mut c_void,
            err: *mut c_char,
            err_len: usize,
        ) -> *mut c_void;
        pub fn dino_dist_all_reduce_sum(g: *mut c_void, t: *mut *mut c_void, n: usize, err: *mut c_char, err_len: usize) -> c_int;
        pub fn dino_dist_broadcast(g: *mut c_void, t: *mut *mut c_void, n: usize, root: c_int, err: *mut c_char, err_len: usize) -> c_int;
        pub fn dino_dist_barrier(g: *mut c_void, err: *mut c_char, err_len: usize) -> c_int;
        pub fn dino_dist_free(g: *mut c_void);
    }
}

#[cfg(dino_dist)]
fn checked(f: impl FnOnce(*mut std::ffi::c_char, usize) -> i32) -> Result<(), DistError> {
    let mut buf = vec![0u8; 2048];
    if f(buf.as_mut_ptr().cast(), buf.len()) == 0 {
        return Ok(());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Err(DistError::C10d(String::from_utf8_lossy(&buf[..end]).into_owned()))
}

impl ProcessGroup {
    /// Joins the job: Gloo for CPU tensors, NCCL for CUDA ones. Fails after `timeout` when the
    /// other ranks do not show up, and every later collective fails after it when one goes away.
    #[cfg(dino_dist)]
    pub fn new(env: &DistEnv, cuda: bool, timeout: Duration) -> Result<Self, DistError> {
        use std::ffi::CString;
        let backend = CString::new(if cuda { "nccl" } else { "gloo" }).unwrap_or_default();
        let host = CString::new(env.master_addr.clone()).map_err(|_| DistError::Env("MASTER_ADDR holds a NUL byte".into()))?;
        let nccl_new = if cuda { nccl::constructor()? } else { std::ptr::null_mut() };
        let mut handle = std::ptr::null_mut();
        checked(|err, len| {
            handle = unsafe {
                ffi::dino_dist_new(
                    backend.as_ptr(),
                    host.as_ptr(),
                    env.master_port as i32,
                    env.rank as i32,
                    env.world_size as i32,
                    env.store_is_external as i32,
                    env.listen_fd.unwrap_or(-1),
                    timeout.as_millis().min(i32::MAX as u128) as i32,
                    nccl_new,
                    err,
                    len,
                )
            };
            if handle.is_null() {
                1
            } else {
                0
            }
        })?;
        Ok(Self { handle, rank: env.rank, world_size: env.world_size })
    }

    #[cfg(not(dino_dist))]
    pub fn new(_env: &DistEnv, _cuda: bool, _timeout: Duration) -> Result<Self, DistError> {
        Err(DistError::NotBuilt)
    }

    #[cfg(dino_dist)]
    fn ptrs(tensors: &mut [Tensor]) -> Vec<*mut std::ffi::c_void> {
        tensors.iter_mut().map(|t| t.as_mut_ptr().cast()).collect()
    }

    /// In-place sum over ranks. Gloo takes one tensor per call (several are per-device copies).
    pub fn all_reduce_sum(&self, t: &mut Tensor) -> Result<(), DistError> {
        #[cfg(dino_dist)]
        {
            let mut p = Self::ptrs(std::slice::from_mut(t));
            checked(|err, len| unsafe { ffi::dino_dist_all_reduce_sum(self.handle, p.as_mut_ptr(), p.len(), err, len) })
        }
        #[cfg(not(dino_dist))]
        {
            let _ = t;
            Err(DistError::NotBuilt)
        }
    }

    /// In place: every rank ends with `root`'s values.
    pub fn broadcast(&self, t: &mut Tensor, root: usize) -> Result<(), DistError> {
        #[cfg(dino_dist)]
        {
            let mut p = Self::ptrs(std::slice::from_mut(t));
            checked(|err, len| unsafe { ffi::dino_dist_broadcast(self.handle, p.as_mut_ptr(), p.len(), root as i32, err, len) })
        }
        #[cfg(not(dino_dist))]
        {
            let _ = (t, root);
            Err(DistError::NotBuilt)
        }
    }

    pub fn barrier(&self) -> Result<(), DistError> {
        #[cfg(dino_dist)]
        {
            checked(|err, len| unsafe { ffi::dino_dist_barrier(self.handle, err, len) })
        }
        #[cfg(not(dino_dist))]
        Err(DistError::NotBuilt)
    }

    /// Sums `tensors` over ranks in place, packed into flat buckets of about `BUCKET_BYTES`
    /// (one collective per bucket instead of one per tensor), in the order given.
    pub fn all_reduce_bucketed(&self, tensors: &[Tensor]) -> Result<(), DistError> {
        let mut start = 0;
        while start < tensors.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < tensors.len() && (end == start || bytes + tensors[end].numel() * 4 <= BUCKET_BYTES) {
                bytes += tensors[end].numel() * 4;
                end += 1;
            }
            let bucket = &tensors[start..end];
            let mut flat = Tensor::cat(&bucket.iter().map(|t| t.reshape([-1])).collect::<Vec<_>>(), 0);
            self.all_reduce_sum(&mut flat)?;
            let mut offset = 0;
            tch::no_grad(|| {
                for t in bucket {
                    let n = t.numel() as i64;
                    let mut dst = t.shallow_clone();
                    dst.copy_(&flat.narrow(0, offset, n).view_as(t));
                    offset += n;
                }
            });
            start = end;
        }
        Ok(())
    }

    /// Averages gradients over ranks (the mean of per-rank mean losses is the global mean).
    pub fn average_gradients(&self, params: &[(String, Tensor)]) -> Result<(), DistError> {
        let grads: Vec<Tensor> = params.iter().map(|(_, p)| p.grad()).filter(|g| g.defined()).collect();
        self.all_reduce_bucketed(&grads)?;
        tch::no_grad(|| {
            for g in &grads {
                let mut g = g.shallow_clone();
                let _ = g.g_div_scalar_(self.world_size as f64);
            }
        });
        Ok(())
    }

    /// Rank 0's values into every tensor (initial weights), in the order given.
    pub fn broadcast_all(&self, tensors: &[Tensor]) -> Result<(), DistError> {
        for t in tensors {
            let mut t = t.shallow_clone();
            tch::no_grad(|| self.broadcast(&mut t, 0))?;
        }
        Ok(())
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        #[cfg(dino_dist)]
        unsafe {
            ffi::dino_dist_free(self.handle)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: std::collections::HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn torchrun_and_slurm_environments() {
        assert_eq!(DistEnv::from_vars(vars(&[])).unwrap(), None);
        let one = DistEnv::from_vars(vars(&[("RANK", "0"), ("WORLD_SIZE", "1")])).unwrap().unwrap();
        assert_eq!(one.world_size, 1, "torchrun with one process is a job of one");
        assert_eq!(DistEnv::from_vars(vars(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1")])).unwrap(), None, "one SLURM task is not");
        let e = DistEnv::from_vars(vars(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node1"),
            ("MASTER_PORT", "29400"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!((e.rank, e.world_size, e.local_rank, e.master_port, e.store_is_external), (3, 8, 1, 29400, true));
        assert_eq!(e.master_addr, "node1");
        let s = DistEnv::from_vars(vars(&[("SLURM_PROCID", "5"), ("SLURM_NTASKS", "16"), ("SLURM_LOCALID", "1")])).unwrap().unwrap();
        assert_eq!((s.rank, s.world_size, s.local_rank, s.master_port, s.store_is_external), (5, 16, 1, 29500, false));
        for bad in [vec![("RANK", "2"), ("WORLD_SIZE", "2")], vec![("RANK", "x"), ("WORLD_SIZE", "2")], vec![("RANK", "0")]] {
            assert!(DistEnv::from_vars(vars(&bad)).is_err(), "{bad:?}");
        }
    }
}
