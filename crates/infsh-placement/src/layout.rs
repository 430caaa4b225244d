//! The slots of one machine: what `engine.yml`'s `workers:` and the
//! inventory make together. A GPU slot is a set of GPUs that a replica
//! placed there sees (its `CUDA_VISIBLE_DEVICES`); a CPU slot holds one CPU
//! replica. See docs/gpus.md for the rules users read.

use std::fmt;

use crate::engine_config::EngineConfig;
use crate::inventory::{GpuInfo, Inventory};

/// A slot's position in [`Layout::slots`]; stable while the engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotId(pub usize);

/// What a slot is.
#[derive(Debug, Clone, PartialEq)]
pub enum SlotKind {
    /// One CPU replica at a time; `number` counts CPU slots from 0.
    Cpu { number: usize },
    /// These GPUs, in the config's order.
    Gpu { gpus: Vec<GpuInfo> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub id: SlotId,
    pub kind: SlotKind,
}

impl Slot {
    /// The GPU indexes a replica here sees; empty for a CPU slot.
    pub fn gpu_indexes(&self) -> Vec<u32> {
        match &self.kind {
            SlotKind::Cpu { .. } => Vec::new(),
            SlotKind::Gpu { gpus } => gpus.iter().map(|g| g.index).collect(),
        }
    }

    /// The `CUDA_VISIBLE_DEVICES` value for a replica here: the slot's GPUs,
    /// or empty (no GPU visible) on a CPU slot.
    pub fn cuda_visible_devices(&self) -> String {
        self.gpu_indexes()
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn is_gpu(&self) -> bool {
        matches!(self.kind, SlotKind::Gpu { .. })
    }

    /// Memory per GPU that every GPU of the slot has (the smallest), in GB;
    /// None when any of them is unknown, or on a CPU slot.
    pub fn vram_per_gpu_gb(&self) -> Option<f64> {
        match &self.kind {
            SlotKind::Cpu { .. } => None,
            SlotKind::Gpu { gpus } => gpus
                .iter()
                .map(|g| g.vram_gb)
                .try_fold(f64::INFINITY, |low, v| v.map(|v| low.min(v))),
        }
    }
}

/// How names in logs and errors read: `cpu 0`, `gpus [2, 3]`.
impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            SlotKind::Cpu { number } => write!(f, "cpu {number}"),
            SlotKind::Gpu { .. } => write!(f, "gpus {:?}", self.gpu_indexes()),
        }
    }
}

/// How CPU apps are bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuPolicy {
    /// No `workers.cpu`: as many CPU replicas as apps ask for.
    Unbounded,
    /// `workers.cpu.count`: that many CPU slots (0: CPU apps are refused).
    Slots(usize),
}

/// One machine's slots.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The engine's name in listings.
    pub name: String,
    pub slots: Vec<Slot>,
    pub cpu: CpuPolicy,
    pub inventory: Inventory,
}

/// A `workers.gpu` entry that names a GPU the machine does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: GPU {index} is not on this machine ({})", present_list(.present))]
pub struct LayoutError {
    pub key: String,
    pub index: u32,
    pub present: Vec<u32>,
}

fn present_list(present: &[u32]) -> String {
    if present.is_empty() {
        return "it has no GPU: declare them under inventory.gpus where NVML cannot see them"
            .into();
    }
    let list: Vec<String> = present.iter().map(u32::to_string).collect();
    format!("it has GPUs {}", list.join(", "))
}

impl Layout {
    /// The slots for `config` on a machine with `inventory`. Without
    /// `workers.gpu`, every GPU of the inventory is one slot.
    pub fn build(config: &EngineConfig, inventory: Inventory) -> Result<Layout, LayoutError> {
        let mut slots = Vec::new();
        let present: Vec<u32> = inventory.gpus.iter().map(|g| g.index).collect();
        if config.workers.gpu.is_empty() {
            for gpu in &inventory.gpus {
                slots.push(SlotKind::Gpu {
                    gpus: vec![gpu.clone()],
                });
            }
        } else {
            for (i, worker) in config.workers.gpu.iter().enumerate() {
                let mut gpus = Vec::new();
                for &index in &worker.gpus {
                    let gpu = inventory.gpu(index).ok_or_else(|| LayoutError {
                        key: format!("workers.gpu[{i}].gpus"),
                        index,
                        present: present.clone(),
                    })?;
                    gpus.push(gpu.clone());
                }
                slots.push(SlotKind::Gpu { gpus });
            }
        }
        let cpu = match config.workers.cpu {
            None => CpuPolicy::Unbounded,
            Some(c) => CpuPolicy::Slots(c.count),
        };
        if let CpuPolicy::Slots(n) = cpu {
            slots.extend((0..n).map(|number| SlotKind::Cpu { number }));
        }
        let slots = slots
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Slot {
                id: SlotId(i),
                kind,
            })
            .collect();
        Ok(Layout {
            name: config.name.clone().unwrap_or_else(host_name),
            slots,
            cpu,
            inventory,
        })
    }

    pub fn slot(&self, id: SlotId) -> &Slot {
        &self.slots[id.0]
    }

    pub fn gpu_slots(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().filter(|s| s.is_gpu())
    }

    pub fn cpu_slots(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().filter(|s| !s.is_gpu())
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn layout(text: &str) -> Result<Layout, LayoutError> {
        let config = EngineConfig::parse(text, Path::new("engine.yml")).unwrap();
        let inventory = Inventory::for_config(&config);
        Layout::build(&config, inventory)
    }

    const FOUR: &str = "inventory:\n  gpus:\n    - {index: 0, vram: 80GB}\n    - {index: 1, vram: 80GB}\n    - {index: 2, vram: 24GB}\n    - {index: 3, vram: 40GB}\n";

    #[test]
    fn without_workers_every_gpu_is_a_slot_and_cpu_is_unbounded() {
        let l = layout(&format!("name: box\n{FOUR}")).unwrap();
        assert_eq!(l.name, "box");
        let names: Vec<String> = l.slots.iter().map(Slot::to_string).collect();
        assert_eq!(names, ["gpus [0]", "gpus [1]", "gpus [2]", "gpus [3]"]);
        assert_eq!(l.cpu, CpuPolicy::Unbounded);
        assert_eq!(l.cpu_slots().count(), 0);
    }

    #[test]
    fn workers_group_gpus_and_add_cpu_slots() {
        let l = layout(&format!(
            "workers:\n  cpu: {{count: 2}}\n  gpu:\n    - gpus: [0]\n    - gpus: [2, 3]\n{FOUR}"
        ))
        .unwrap();
        let names: Vec<String> = l.slots.iter().map(Slot::to_string).collect();
        assert_eq!(names, ["gpus [0]", "gpus [2, 3]", "cpu 0", "cpu 1"]);
        let pair = l.slot(SlotId(1));
        assert_eq!(pair.cuda_visible_devices(), "2,3");
        // The smaller GPU bounds what an app may declare per GPU.
        assert_eq!(pair.vram_per_gpu_gb(), Some(24.0));
        assert_eq!(l.slot(SlotId(2)).cuda_visible_devices(), "");
        assert_eq!(l.cpu, CpuPolicy::Slots(2));
    }

    #[test]
    fn a_slot_with_an_unknown_vram_has_no_vram_figure() {
        let l = layout("inventory:\n  gpus:\n    - {index: 0, vram: 80GB}\n    - {index: 1}\nworkers:\n  gpu:\n    - gpus: [0, 1]\n").unwrap();
        assert_eq!(l.slots[0].vram_per_gpu_gb(), None);
    }

    #[test]
    fn a_gpu_that_is_not_there_is_refused() {
        let e = layout(&format!(
            "workers:\n  gpu:\n    - gpus: [0]\n    - gpus: [7]\n{FOUR}"
        ))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "workers.gpu[1].gpus: GPU 7 is not on this machine (it has GPUs 0, 1, 2, 3)"
        );
        let config =
            EngineConfig::parse("workers:\n  gpu:\n    - gpus: [0]\n", Path::new("e.yml")).unwrap();
        let e = Layout::build(&config, Inventory::without_gpus(None)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "workers.gpu[0].gpus: GPU 0 is not on this machine (it has no GPU: declare them under inventory.gpus where NVML cannot see them)"
        );
    }

    #[test]
    fn the_name_defaults_to_the_host_name() {
        let l = Layout::build(&EngineConfig::default(), Inventory::without_gpus(None)).unwrap();
        assert!(!l.name.is_empty());
        assert!(l.slots.is_empty());
    }
}
