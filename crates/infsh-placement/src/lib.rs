//! infsh-placement: where an app's replicas may run on one machine.
//!
//! The engine asks this crate three questions, and owns everything else
//! (starting replicas, queues, the `unload` call):
//! - what does this machine offer? [`EngineConfig`] (`engine.yml`, the
//!   platform's format plus a declared inventory and per-app overrides) and
//!   an [`Inventory`] (declared, or detected through NVML) become a
//!   [`Layout`]: named [`Slot`]s, each a set of GPUs or one CPU worker;
//! - what does this app need? [`AppNeeds`], read from `inf.yml`'s
//!   `resources:`;
//! - where does its next replica go? [`place`] answers with a
//!   [`Decision`]: a slot that fits now, a slot that fits once the least
//!   recently used idle replicas are stopped, a reason to wait, or
//!   [`NoMatchingWorker`] when no slot here can ever host it.
//!
//! Everything here is pure (no processes, no clocks read), so every rule has
//! a fast unit test; docs/gpus.md states the rules for users.

pub mod engine_config;
mod gpu;
pub mod inventory;
pub mod layout;
pub mod needs;
mod nvml;
pub mod placement;

pub use engine_config::{AppOverrides, ConfigError, EngineConfig};
pub use inventory::{GpuInfo, GpuReading, Inventory, InventorySource};
pub use layout::{CpuPolicy, Layout, LayoutError, Slot, SlotId, SlotKind};
pub use needs::{AppNeeds, GpuKind, NeedsError};
pub use placement::{place, place_on, Decision, NoMatchingWorker, Resident};
