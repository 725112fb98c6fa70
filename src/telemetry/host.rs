//! Host CPU and memory, and this process's own resident memory, through `sysinfo`.

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct HostSample {
    /// Mean over all cores, 0..100.
    pub cpu_percent: f32,
    pub cpu_count: usize,
    pub ram_used: u64,
    pub ram_total: u64,
    /// Resident memory of this process.
    pub process_mem: u64,
}

pub struct HostMonitor {
    sys: System,
    pid: Option<Pid>,
}

impl HostMonitor {
    pub fn new() -> Self {
        let mut sys = System::new();
        // CPU usage is a difference between two refreshes; this first one sets the baseline.
        sys.refresh_cpu_usage();
        Self { sys, pid: sysinfo::get_current_pid().ok() }
    }

    pub fn sample(&mut self) -> HostSample {
        self.sys.refresh_cpu_usage();
        self.sys.refresh_memory();
        let mut process_mem = 0;
        if let Some(pid) = self.pid {
            self.sys.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), true, ProcessRefreshKind::nothing().with_memory());
            process_mem = self.sys.process(pid).map(|p| p.memory()).unwrap_or(0);
        }
        HostSample {
            cpu_percent: self.sys.global_cpu_usage(),
            cpu_count: self.sys.cpus().len(),
            ram_used: self.sys.used_memory(),
            ram_total: self.sys.total_memory(),
            process_mem,
        }
    }
}

impl Default for HostMonitor {
    fn default() -> Self {
        Self::new()
    }
}
