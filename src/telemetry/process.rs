//! One process's resources (this one's, the trainer sampling itself): CPU over the interval
//! since the last sample, resident memory and threads from `/proc` through `sysinfo`, and on
//! CUDA its GPU memory and utilisation through NVML. The trainer sends these to viewers in other
//! processes, whose own telemetry would otherwise show the viewer, not the trainer.

use super::gpu::GpuMonitor;
use crate::protocol::ProcessSample;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

pub struct ProcessMonitor {
    sys: System,
    pid: Option<Pid>,
    gpu: GpuMonitor,
    /// NVML's utilisation samples are read from this timestamp (µs) on, so each sample covers
    /// the interval since the previous one.
    gpu_seen: Option<u64>,
}

impl ProcessMonitor {
    pub fn new() -> Self {
        let mut m = Self { sys: System::new(), pid: sysinfo::get_current_pid().ok(), gpu: GpuMonitor::new(), gpu_seen: None };
        // CPU use is a difference between two refreshes: this one sets the baseline.
        m.refresh();
        m
    }

    fn refresh(&mut self) {
        if let Some(pid) = self.pid {
            let what = ProcessRefreshKind::nothing().with_memory().with_cpu().with_tasks();
            self.sys.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), true, what);
        }
    }

    pub fn sample(&mut self) -> ProcessSample {
        self.refresh();
        let Some((pid, p)) = self.pid.and_then(|pid| Some((pid, self.sys.process(pid)?))) else { return ProcessSample::default() };
        let threads = p.tasks().map_or_else(|| thread_count(pid.as_u32()), |t| t.len().max(1));
        let (gpu_mem, gpu_util) = self.gpu.process_usage(pid.as_u32(), &mut self.gpu_seen);
        ProcessSample { pid: pid.as_u32(), cpu_percent: p.cpu_usage(), rss: p.memory(), threads, gpu_mem, gpu_util }
    }
}

impl Default for ProcessMonitor {
    fn default() -> Self {
        Self::new()
    }
}

/// Threads from `/proc/PID/status` (for kernels where sysinfo lists no tasks).
fn thread_count(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("Threads:")?.trim().parse().ok()).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_this_process_its_memory_threads_and_busy_cpu() {
        let mut m = ProcessMonitor::new();
        // Two threads spinning for a while: CPU use well above idle, threads counted.
        let spin = || {
            let t0 = std::time::Instant::now();
            let mut x = 0u64;
            while t0.elapsed() < std::time::Duration::from_millis(400) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        };
        let h = std::thread::spawn(spin);
        spin();
        let s = m.sample();
        let _ = h.join();
        assert_eq!(s.pid, std::process::id());
        assert!(s.rss > 1 << 20, "{s:?}");
        assert!(s.threads >= 2, "{s:?}");
        assert!(s.cpu_percent > 20.0, "{s:?}");
    }
}
