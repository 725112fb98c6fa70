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

impl Default for GpuMonitor {
    fn default() -> Self {
        Self::new()
    }
}
