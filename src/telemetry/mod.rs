//! Machine telemetry shown beside the training curves: GPUs through NVML (loaded at run time, its
//! absence a normal state) and the host's CPU and memory. Sampling produces a plain `Telemetry`
//! value, so the UI can draw an injected snapshot in tests exactly as it draws a live one.

pub mod gpu;
pub mod host;
pub mod process;

pub use gpu::{GpuMonitor, GpuSample, GpuStatus};
pub use host::{HostMonitor, HostSample};
pub use process::ProcessMonitor;

/// Everything the UI shows about the machine at one moment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Telemetry {
    pub gpus: GpuStatus,
    pub host: HostSample,
}

/// Owns the monitors so NVML is initialised once per process, not per sample.
pub struct TelemetrySampler {
    gpu: GpuMonitor,
    host: HostMonitor,
}

impl TelemetrySampler {
    pub fn new() -> Self {
        Self { gpu: GpuMonitor::new(), host: HostMonitor::new() }
    }

    pub fn sample(&mut self) -> Telemetry {
        Telemetry { gpus: self.gpu.sample(), host: self.host.sample() }
    }
}

impl Default for TelemetrySampler {
    fn default() -> Self {
        Self::new()
    }
}
