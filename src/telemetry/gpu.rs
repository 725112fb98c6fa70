//! Per-GPU utilisation, memory, temperature and power through NVML. The library is loaded when the
//! monitor is made; a machine without an NVIDIA driver is an ordinary case reported as a status.

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::Nvml;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct GpuSample {
    pub index: u32,
    pub name: String,
    /// Percent of time a kernel ran over NVML's last sample period.
    pub util_percent: Option<u32>,
    pub mem_used: Option<u64>,
    pub mem_total: Option<u64>,
    pub temperature_c: Option<u32>,
    pub power_w: Option<f64>,
}

/// What the GPU panel shows.
#[derive(Debug, Clone, PartialEq)]
pub enum GpuStatus {
    /// NVML could not be loaded or initialised; the reason, for the log.
    Unavailable(String),
    Gpus(Vec<GpuSample>),
}

impl Default for GpuStatus {
    fn default() -> Self {
        GpuStatus::Unavailable("NVML not found".into())
    }
}

pub struct GpuMonitor {
    nvml: Result<Nvml, String>,
}

impl GpuMonitor {
    pub fn new() -> Self {
        let nvml = Nvml::init().map_err(|e| {
            tracing::info!("NVML unavailable, GPU panel shows the CPU instead: {e}");
            "NVML not found".to_string()
        });
        Self { nvml }
    }

    pub fn sample(&self) -> GpuStatus {
        let nvml = match &self.nvml {
            Ok(n) => n,
            Err(why) => return GpuStatus::Unavailable(why.clone()),
        };
        let count = match nvml.device_count() {
            Ok(c) => c,
            Err(e) => return GpuStatus::Unavailable(format!("NVML: {e}")),
        };
        // A device that fails one query still shows the others: drivers refuse some queries on
        // some boards (power on consumer cards, for instance).
        let gpus = (0..count)
            .filter_map(|index| {
                let d = nvml.device_by_index(index).ok()?;
                let mem = d.memory_info().ok();
                Some(GpuSample {
                    index,
                    name: d.name().unwrap_or_else(|_| format!("GPU {index}")),
                    util_percent: d.utilization_rates().ok().map(|u| u.gpu),
                    mem_used: mem.as_ref().map(|m| m.used),
                    mem_total: mem.as_ref().map(|m| m.total),
                    temperature_c: d.temperature(TemperatureSensor::Gpu).ok(),
                    power_w: d.power_usage().ok().map(|mw| mw as f64 / 1000.0),
                })
            })
            .collect();
        GpuStatus::Gpus(gpus)
    }
}

impl GpuMonitor {
    /// GPU memory (bytes) and SM utilisation (percent) of process `pid`, summed over the devices
    /// it runs on; None for each where NVML is missing or the process uses no GPU. `seen` is the
    /// timestamp of the utilisation samples already counted.
    pub fn process_usage(&self, pid: u32, seen: &mut Option<u64>) -> (Option<u64>, Option<u32>) {
        let Ok(nvml) = &self.nvml else { return (None, None) };
        let (mut mem, mut util, mut newest) = (None::<u64>, None::<u32>, *seen);
        for index in 0..nvml.device_count().unwrap_or(0) {
            let Ok(d) = nvml.device_by_index(index) else { continue };
            for p in d.running_compute_processes().unwrap_or_default().into_iter().filter(|p| p.pid == pid) {
                if let nvml_wrapper::enums::device::UsedGpuMemory::Used(b) = p.used_gpu_memory {
                    mem = Some(mem.unwrap_or(0) + b);
                }
            }
            // NOT_FOUND (no sample since `seen`) is the normal answer of an idle process.
            for u in d.process_utilization_stats(*seen).unwrap_or_default().into_iter().filter(|u| u.pid == pid) {
                util = Some(util.unwrap_or(0) + u.sm_util);
                newest = newest.max(Some(u.timestamp));
            }
        }
        *seen = newest;
        (mem, util)
    }
}

impl Default for GpuMonitor {
    fn default() -> Self {
        Self::new()
    }
}
