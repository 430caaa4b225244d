//! What GPUs this machine has, and how much memory: declared in
//! `engine.yml`'s `inventory:`, or detected through NVML. Undeclared and
//! undetected means no GPU: CPU apps still run, GPU apps are refused with
//! `no_matching_worker` instead of failing late inside CUDA.

use std::sync::Arc;

use crate::engine_config::{DeclaredInventory, EngineConfig};
pub use crate::gpu::{GpuInfo, GpuReading};
use crate::nvml::Probe;

/// Where the GPU list came from; shown in `GET /engines`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventorySource {
    Declared,
    Detected,
    /// No GPU: the reason detection found none (no driver, no device).
    Absent {
        why: String,
    },
}

impl InventorySource {
    pub fn as_str(&self) -> &'static str {
        match self {
            InventorySource::Declared => "declared",
            InventorySource::Detected => "nvml",
            InventorySource::Absent { .. } => "none",
        }
    }
}

/// The machine's GPUs and memory.
#[derive(Clone)]
pub struct Inventory {
    pub gpus: Vec<GpuInfo>,
    pub source: InventorySource,
    /// Total memory in GB, when known.
    pub ram_gb: Option<f64>,
    probe: Option<Arc<Probe>>,
}

impl std::fmt::Debug for Inventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inventory")
            .field("gpus", &self.gpus)
            .field("source", &self.source)
            .field("ram_gb", &self.ram_gb)
            .finish()
    }
}

impl Inventory {
    /// The config's declared inventory if it has one, else what NVML finds.
    pub fn for_config(config: &EngineConfig) -> Inventory {
        match &config.inventory {
            Some(declared) => Inventory::declared(declared),
            None => Inventory::detect(),
        }
    }

    /// Exactly the declared GPUs (already checked by [`EngineConfig::parse`]).
    pub fn declared(declared: &DeclaredInventory) -> Inventory {
        let gpus = declared
            .gpus
            .iter()
            .map(|g| GpuInfo {
                index: g.index,
                name: g.name.clone().unwrap_or_else(|| format!("GPU {}", g.index)),
                vram_gb: g.vram.as_ref().and_then(|v| v.as_gigabytes()),
                vendor: g
                    .vendor
                    .as_deref()
                    .unwrap_or("nvidia")
                    .trim()
                    .to_ascii_lowercase(),
            })
            .collect();
        Inventory {
            gpus,
            source: InventorySource::Declared,
            ram_gb: declared
                .ram
                .as_ref()
                .and_then(|r| r.as_gigabytes())
                .or_else(machine_ram_gb),
            probe: None,
        }
    }

    /// What NVML reports; no GPU where the library or a device is missing.
    pub fn detect() -> Inventory {
        let (gpus, source, probe) = match Probe::open() {
            Ok(probe) => match probe.gpus() {
                Ok(gpus) if !gpus.is_empty() => {
                    (gpus, InventorySource::Detected, Some(Arc::new(probe)))
                }
                Ok(_) => (
                    Vec::new(),
                    InventorySource::Absent {
                        why: "NVML reports no GPU".into(),
                    },
                    None,
                ),
                Err(why) => (Vec::new(), InventorySource::Absent { why }, None),
            },
            Err(why) => (Vec::new(), InventorySource::Absent { why }, None),
        };
        Inventory {
            gpus,
            source,
            ram_gb: machine_ram_gb(),
            probe,
        }
    }

    /// A machine without GPUs, `ram_gb` of memory (tests, CPU-only hosts).
    pub fn without_gpus(ram_gb: Option<f64>) -> Inventory {
        Inventory {
            gpus: Vec::new(),
            source: InventorySource::Absent {
                why: "no GPU declared".into(),
            },
            ram_gb,
            probe: None,
        }
    }

    pub fn gpu(&self, index: u32) -> Option<&GpuInfo> {
        self.gpus.iter().find(|g| g.index == index)
    }

    /// Live memory and utilisation per GPU; empty unless detected by NVML.
    pub fn readings(&self) -> Vec<GpuReading> {
        self.probe
            .as_ref()
            .map(|p| p.readings())
            .unwrap_or_default()
    }
}

/// MemTotal from /proc/meminfo, in GB; None where it cannot be read.
fn machine_ram_gb() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo_total(&text)
}

fn parse_meminfo_total(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_declared_inventory_is_taken_as_written() {
        let config = EngineConfig::parse(
            "inventory:\n  ram: 64GB\n  gpus:\n    - {index: 0, name: \"NVIDIA H100\", vram: 80GB}\n    - {index: 3, vendor: AMD}\n",
            Path::new("engine.yml"),
        )
        .unwrap();
        let inv = Inventory::for_config(&config);
        assert_eq!(inv.source, InventorySource::Declared);
        assert_eq!(inv.ram_gb, Some(64.0));
        assert_eq!(inv.gpus.len(), 2);
        assert_eq!(inv.gpu(0).unwrap().vram_gb, Some(80.0));
        assert_eq!(inv.gpu(0).unwrap().vendor, "nvidia");
        let third = inv.gpu(3).unwrap();
        assert_eq!(
            (third.name.as_str(), third.vram_gb, third.vendor.as_str()),
            ("GPU 3", None, "amd")
        );
        assert!(inv.readings().is_empty());
    }

    #[test]
    fn detection_without_a_driver_is_no_gpu_with_a_reason() {
        // This test machine may or may not have a driver: either way the
        // answer is consistent and never a panic.
        let inv = Inventory::detect();
        match &inv.source {
            InventorySource::Detected => assert!(!inv.gpus.is_empty()),
            InventorySource::Absent { why } => {
                assert!(inv.gpus.is_empty());
                assert!(!why.is_empty());
            }
            InventorySource::Declared => panic!("detect never declares"),
        }
    }

    #[test]
    fn meminfo_total_is_read_in_gigabytes() {
        let text = "MemTotal:       24576000 kB\nMemFree:         1000 kB\n";
        let gb = parse_meminfo_total(text).unwrap();
        assert!((gb - 25.165824).abs() < 1e-9, "{gb}");
        assert_eq!(parse_meminfo_total("MemFree: 1 kB\n"), None);
    }
}
