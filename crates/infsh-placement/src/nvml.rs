//! The one place that talks to NVIDIA's management library. `nvml-wrapper`
//! loads `libnvidia-ml.so` when [`Probe::open`] runs, not when the binary
//! starts, so infsh runs unchanged on machines without a driver.

use nvml_wrapper::Nvml;

use crate::gpu::{GpuInfo, GpuReading};

pub(crate) struct Probe {
    nvml: Nvml,
}

const GB: f64 = 1e9;

impl Probe {
    pub(crate) fn open() -> Result<Probe, String> {
        Nvml::init()
            .map(|nvml| Probe { nvml })
            .map_err(|e| format!("NVML is not available: {e}"))
    }

    pub(crate) fn gpus(&self) -> Result<Vec<GpuInfo>, String> {
        let count = self
            .nvml
            .device_count()
            .map_err(|e| format!("NVML cannot count devices: {e}"))?;
        let mut gpus = Vec::new();
        for index in 0..count {
            let device = self
                .nvml
                .device_by_index(index)
                .map_err(|e| format!("NVML cannot open GPU {index}: {e}"))?;
            gpus.push(GpuInfo {
                index,
                name: device.name().unwrap_or_else(|_| format!("GPU {index}")),
                vram_gb: device.memory_info().ok().map(|m| m.total as f64 / GB),
                vendor: "nvidia".into(),
            });
        }
        Ok(gpus)
    }

    /// Readings of every GPU that answers; one that does not is left out
    /// (a listing must not fail because one device is busy resetting).
    pub(crate) fn readings(&self) -> Vec<GpuReading> {
        let count = self.nvml.device_count().unwrap_or(0);
        (0..count)
            .filter_map(|index| {
                let device = self.nvml.device_by_index(index).ok()?;
                let memory = device.memory_info().ok()?;
                Some(GpuReading {
                    index,
                    memory_used_gb: memory.used as f64 / GB,
                    memory_total_gb: memory.total as f64 / GB,
                    utilization_percent: device.utilization_rates().ok().map(|u| u.gpu),
                })
            })
            .collect()
    }
}
