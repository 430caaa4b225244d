//! Where an app's next replica goes. The rules (docs/gpus.md, "Placement"):
//!
//! 1. A CPU app (`gpu.count` 0 or absent, or `type: none`) goes to a CPU
//!    slot, never to a GPU slot; without `workers.cpu` it is not bounded.
//! 2. A GPU app may use a GPU slot with at least `count` GPUs, all of its
//!    `type`, each with at least its declared `vram`.
//! 3. Apps share a GPU slot while their declared VRAM adds up within the
//!    slot's; an app with undeclared VRAM, or a slot with unknown VRAM, is
//!    alone.
//! 4. Among slots that fit now: the fewest GPUs, then one not already
//!    holding this app (two replicas of one app see different GPUs), then
//!    the fullest (so whole slots stay free for large apps), then the first.
//! 5. When none fits now, the least recently used idle replicas that free a
//!    fitting slot are stopped; never one running a task (or starting, or
//!    already stopping), held by a session
//!    or kept warm. Else the task waits, and the reason names who holds what.
//! 6. An app that no slot can ever host, or whose `ram` exceeds the
//!    machine's, is refused at once ([`NoMatchingWorker`]).
//!
//! Pure: the engine passes in what is resident and carries out the answer.

use std::cmp::Ordering;
use std::fmt;
use std::time::Instant;

use crate::layout::{CpuPolicy, Layout, Slot, SlotId};
use crate::needs::{gb, AppNeeds, GpuKind};

/// Rounding slack when adding declared VRAM figures.
const VRAM_EPSILON_GB: f64 = 1e-6;

/// A replica that holds (part of) a slot.
#[derive(Debug, Clone)]
pub struct Resident {
    pub replica: u64,
    /// `namespace/name`.
    pub app: String,
    pub slot: SlotId,
    /// Declared VRAM per GPU; None takes the slot alone.
    pub vram_gb: Option<f64>,
    pub busy: bool,
    pub keep_warm: bool,
    pub held_by_session: bool,
    /// Its worker is starting (it is about to take a task), or its slot is
    /// kept for it while another replica is evicted.
    pub starting: bool,
    /// It was asked to stop (an eviction in progress).
    pub stopping: bool,
    pub last_used: Instant,
}

impl Resident {
    fn evictable(&self) -> bool {
        !(self.busy || self.keep_warm || self.held_by_session || self.starting || self.stopping)
    }

    fn state(&self) -> &'static str {
        if self.busy {
            "running a task"
        } else if self.stopping {
            "stopping"
        } else if self.starting {
            "starting"
        } else if self.held_by_session {
            "held by a session"
        } else if self.keep_warm {
            "keep_warm"
        } else {
            "idle"
        }
    }
}

/// What the engine should do for one new replica.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Start it on this slot.
    Place { slot: SlotId },
    /// A CPU app on an engine without CPU bounds: start it, no slot.
    Unbounded,
    /// Stop these replicas (their `unload` runs), then start it on `slot`.
    Evict { slot: SlotId, victims: Vec<u64> },
    /// Every slot that could host it is held; `reason` is for the task's logs.
    Wait { reason: String },
    /// No slot of this machine can ever host it.
    Never(NoMatchingWorker),
}

/// `503 no_matching_worker`: what the app needs and why no slot here fits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{app} needs {needs}; {why}")]
pub struct NoMatchingWorker {
    pub app: String,
    /// [`AppNeeds`]'s description.
    pub needs: String,
    /// Names the largest slot, or what the machine lacks.
    pub why: String,
}

/// Decides where a new replica of `app` goes. `may_evict` is false when the
/// app already has a replica (scaling out never stops other apps).
pub fn place(
    layout: &Layout,
    app: &str,
    needs: &AppNeeds,
    residents: &[Resident],
    may_evict: bool,
) -> Decision {
    place_on(layout, app, needs, residents, may_evict, None)
}

/// [`place`] among the slots `only` names (a run pinned to named slots:
/// its replica goes there or waits, never elsewhere); None: any slot.
pub fn place_on(
    layout: &Layout,
    app: &str,
    needs: &AppNeeds,
    residents: &[Resident],
    may_evict: bool,
    only: Option<&[SlotId]>,
) -> Decision {
    if let Some(why) = never_reason(layout, needs) {
        return Decision::Never(NoMatchingWorker {
            app: app.to_string(),
            needs: needs.to_string(),
            why,
        });
    }
    // An unbounded CPU replica holds no slot: it cannot be on a named one.
    if !needs.is_gpu() && layout.cpu == CpuPolicy::Unbounded && only.is_none() {
        return Decision::Unbounded;
    }
    let candidates: Vec<&Slot> = layout
        .slots
        .iter()
        .filter(|s| only.is_none_or(|only| only.contains(&s.id)))
        .filter(|s| ever_fits(s, needs))
        .collect();
    let on = |slot: SlotId| -> Vec<&Resident> {
        let mut here: Vec<&Resident> = residents.iter().filter(|r| r.slot == slot).collect();
        here.sort_by_key(|r| r.last_used);
        here
    };

    let best_now = candidates
        .iter()
        .filter(|s| fits_now(s, needs, &on(s.id)))
        .min_by(|a, b| {
            let key = |s: &Slot| {
                let here = on(s.id);
                (
                    s.gpu_indexes().len(),
                    here.iter().any(|r| r.app == app),
                    free_after(s, needs, &here),
                )
            };
            let (ka, kb) = (key(a), key(b));
            ka.0.cmp(&kb.0)
                .then(ka.1.cmp(&kb.1))
                .then(ka.2.partial_cmp(&kb.2).unwrap_or(Ordering::Equal))
                .then(a.id.cmp(&b.id))
        });
    if let Some(slot) = best_now {
        return Decision::Place { slot: slot.id };
    }

    if may_evict {
        let best_eviction = candidates
            .iter()
            .filter_map(|s| victims_for(s, needs, &on(s.id)).map(|v| (*s, v)))
            .min_by(|(a, va), (b, vb)| {
                let newest = |v: &[&Resident]| v.iter().map(|r| r.last_used).max();
                a.gpu_indexes()
                    .len()
                    .cmp(&b.gpu_indexes().len())
                    .then(newest(va).cmp(&newest(vb)))
                    .then(va.len().cmp(&vb.len()))
                    .then(a.id.cmp(&b.id))
            });
        if let Some((slot, victims)) = best_eviction {
            return Decision::Evict {
                slot: slot.id,
                victims: victims.iter().map(|r| r.replica).collect(),
            };
        }
    }

    let kind = if needs.is_gpu() { "GPU" } else { "CPU" };
    let holders: Vec<String> = candidates
        .iter()
        .map(|s| {
            let here = on(s.id);
            let who: Vec<String> = here
                .iter()
                .map(|r| format!("{} ({})", r.app, r.state()))
                .collect();
            let verb = if here.len() == 1 { "holds" } else { "hold" };
            format!("{} {verb} {s}", who.join(" and "))
        })
        .collect();
    Decision::Wait {
        reason: format!("waiting for a {kind} slot: {}", holders.join("; ")),
    }
}

/// Why no slot can ever host the app, if none can.
fn never_reason(layout: &Layout, needs: &AppNeeds) -> Option<String> {
    if let (Some(want), Some(have)) = (needs.ram_gb, layout.inventory.ram_gb) {
        if want > have + VRAM_EPSILON_GB {
            return Some(format!("this machine has {} GB of RAM", gb(have)));
        }
    }
    if !needs.is_gpu() {
        return match layout.cpu {
            CpuPolicy::Slots(0) => {
                Some("this engine has no CPU workers (workers.cpu.count is 0)".into())
            }
            _ => None,
        };
    }
    let gpu_slots: Vec<&Slot> = layout.gpu_slots().collect();
    if gpu_slots.is_empty() {
        return Some("this machine has no GPU slot".into());
    }
    if layout.slots.iter().any(|s| ever_fits(s, needs)) {
        return None;
    }
    if let GpuKind::Vendor(vendor) = &needs.kind {
        let of_vendor = gpu_slots.iter().any(|s| all_of_vendor(s, vendor));
        if !of_vendor {
            let mut vendors: Vec<&str> = layout
                .inventory
                .gpus
                .iter()
                .map(|g| g.vendor.as_str())
                .collect();
            vendors.sort_unstable();
            vendors.dedup();
            return Some(format!(
                "no slot here has {vendor} GPUs (the GPUs here are {})",
                vendors.join(", ")
            ));
        }
    }
    let largest = gpu_slots
        .iter()
        .max_by(|a, b| {
            a.gpu_indexes().len().cmp(&b.gpu_indexes().len()).then(
                a.vram_per_gpu_gb()
                    .unwrap_or(0.0)
                    .partial_cmp(&b.vram_per_gpu_gb().unwrap_or(0.0))
                    .unwrap_or(Ordering::Equal),
            )
        })
        .expect("not empty");
    Some(format!("the largest slot here is {}", describe(largest)))
}

/// `gpus [2, 3] (2 GPUs, 24 GB each)`.
fn describe(slot: &Slot) -> String {
    let n = slot.gpu_indexes().len();
    let plural = if n == 1 { "" } else { "s" };
    let vram = match slot.vram_per_gpu_gb() {
        Some(v) if n == 1 => format!("{} GB", gb(v)),
        Some(v) => format!("{} GB each", gb(v)),
        None => "VRAM unknown".into(),
    };
    format!("{slot} ({n} GPU{plural}, {vram})")
}

fn all_of_vendor(slot: &Slot, vendor: &str) -> bool {
    match &slot.kind {
        crate::layout::SlotKind::Gpu { gpus } => gpus.iter().all(|g| g.vendor == vendor),
        crate::layout::SlotKind::Cpu { .. } => false,
    }
}

/// Could the app run here if the slot were empty?
fn ever_fits(slot: &Slot, needs: &AppNeeds) -> bool {
    if !needs.is_gpu() {
        return !slot.is_gpu();
    }
    if !slot.is_gpu() || slot.gpu_indexes().len() < needs.gpus as usize {
        return false;
    }
    if let GpuKind::Vendor(vendor) = &needs.kind {
        if !all_of_vendor(slot, vendor) {
            return false;
        }
    }
    match (needs.vram_gb, slot.vram_per_gpu_gb()) {
        (Some(want), Some(have)) => want <= have + VRAM_EPSILON_GB,
        _ => true,
    }
}

/// Could the app run here beside `here` (already known to ever fit)?
fn fits_now(slot: &Slot, needs: &AppNeeds, here: &[&Resident]) -> bool {
    if here.is_empty() {
        return true;
    }
    if !slot.is_gpu() {
        return false;
    }
    let (Some(want), Some(capacity)) = (needs.vram_gb, slot.vram_per_gpu_gb()) else {
        return false;
    };
    let mut used = 0.0;
    for r in here {
        match r.vram_gb {
            Some(v) => used += v,
            None => return false,
        }
    }
    used + want <= capacity + VRAM_EPSILON_GB
}

/// VRAM left per GPU once the app is placed; infinite where unknown.
fn free_after(slot: &Slot, needs: &AppNeeds, here: &[&Resident]) -> f64 {
    let capacity = slot.vram_per_gpu_gb().unwrap_or(f64::INFINITY);
    let used: f64 = here.iter().filter_map(|r| r.vram_gb).sum();
    capacity - used - needs.vram_gb.unwrap_or(0.0)
}

/// The least recently used idle replicas whose stopping makes the app fit,
/// if stopping idle ones can.
fn victims_for<'a>(
    slot: &Slot,
    needs: &AppNeeds,
    here: &[&'a Resident],
) -> Option<Vec<&'a Resident>> {
    let mut remaining: Vec<&Resident> = here.to_vec();
    let mut victims = Vec::new();
    for r in here.iter().filter(|r| r.evictable()) {
        if fits_now(slot, needs, &remaining) {
            break;
        }
        remaining.retain(|x| x.replica != r.replica);
        victims.push(*r);
    }
    (fits_now(slot, needs, &remaining) && !victims.is_empty()).then_some(victims)
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Place { slot } => write!(f, "place on slot {}", slot.0),
            Decision::Unbounded => f.write_str("start (CPU, unbounded)"),
            Decision::Evict { slot, victims } => {
                write!(f, "evict {victims:?}, then place on slot {}", slot.0)
            }
            Decision::Wait { reason } => f.write_str(reason),
            Decision::Never(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(test)]
#[path = "placement_tests.rs"]
mod tests;
