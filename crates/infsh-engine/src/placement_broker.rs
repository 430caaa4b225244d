//! The machine-wide placement broker: which replica of which app holds
//! which slot of this machine's [`Layout`], and where an app's next replica
//! may go ([`infsh_placement::place`]).
//!
//! Every app's scheduler asks it before starting a replica
//! ([`Broker::request`]) and gets a [`Lease`] on a slot, or is told to wait.
//! The lease is the replica's hold on its slot: dropping it (a crash, a
//! kill, an eviction, shutdown: whoever stops the process drops the lease
//! once it is gone) releases the slot and wakes every scheduler that waits
//! for one ([`Broker::subscribe`]).
//!
//! One direction only: schedulers call the broker, never the reverse while
//! a lock is held. An eviction is decided under the lock, and the victims'
//! schedulers are asked (through the [`Evictor`] each lease registered, a
//! non-blocking send) only after it is released; a victim that became busy
//! meanwhile refuses ([`Lease::eviction_refused`]) and the waiter asks
//! again. The slot being freed is reserved for the app it is freed for
//! (for at most [`RESERVATION`]), so that another app woken by the release
//! cannot take it first; a timer wakes every waiter when a reservation
//! expires (a waiter that went away must not leave the others asleep), and
//! an app whose queue emptied gives its reservation up at once. The lock is
//! a plain mutex, never held across an `.await`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use infsh_placement::{
    place, place_on, AppNeeds, Decision, Layout, NoMatchingWorker, Resident, Slot, SlotId,
};
use tokio::sync::watch;

use crate::views::{replica_id, EngineView, GpuView, SlotView};

/// Asks a replica's scheduler to stop that (idle) replica; must not block.
pub(crate) type Evictor = Arc<dyn Fn() + Send + Sync>;

/// The slots of this machine and who holds them.
pub(crate) struct Broker {
    layout: Layout,
    state: Mutex<State>,
    /// Bumped whenever a slot may have become free (a release, a refused
    /// eviction) or dispatch resumes (undrain): waiting schedulers retry.
    wake: watch::Sender<u64>,
    evictions: AtomicU64,
    /// Dispatch paused on the whole engine (`Engine::drain_engine`).
    draining: AtomicBool,
}

/// How long a slot freed by an eviction is kept for the app it was freed
/// for: longer than a victim's unload and kill take, short enough that a
/// waiter that went away (its tasks cancelled) does not hold it for long.
const RESERVATION: Duration = Duration::from_secs(30);

#[derive(Default)]
struct State {
    next_id: u64,
    residents: BTreeMap<u64, Entry>,
    /// Slots being freed by an eviction, for the app they are freed for:
    /// another app woken by the release must not take them first.
    reservations: BTreeMap<SlotId, Reservation>,
    /// Per app: tasks queued while the app has no replica and waits for a slot.
    waiting: BTreeMap<String, usize>,
}

struct Entry {
    app: String,
    /// The replica's number in its app.
    replica: usize,
    slot: Slot,
    vram_gb: Option<f64>,
    /// Tasks running on it.
    busy: usize,
    /// Started and not ready yet: about to take a task, so not a victim.
    starting: bool,
    keep_warm: bool,
    /// Asked to stop: neither a victim again nor free.
    stopping: bool,
    last_used: Instant,
    evict: Evictor,
}

struct Reservation {
    app: String,
    vram_gb: Option<f64>,
    /// The tokio clock's, so that its timer and tests agree with it.
    until: tokio::time::Instant,
}

/// What a scheduler that wants a new replica is told.
pub(crate) enum Grant {
    /// Start it; the lease holds its slot (none for an unbounded CPU app).
    Start(Lease),
    /// Idle replicas of other apps were asked to stop; ask again when woken.
    Evicting,
    /// Every slot that could host it is held by replicas that cannot be
    /// stopped now; the reason is for the tasks' logs.
    Wait(String),
    /// No slot of this machine can ever host the app.
    Never(NoMatchingWorker),
}

/// A replica's hold on its slot; dropping it releases the slot.
pub(crate) struct Lease {
    broker: Arc<Broker>,
    /// None: an unbounded CPU replica, which holds no slot.
    id: Option<u64>,
    slot: Option<Slot>,
    /// The task count last given to the broker.
    reported_busy: usize,
}

impl Broker {
    pub fn new(layout: Layout) -> Arc<Broker> {
        Arc::new(Broker {
            layout,
            state: Mutex::new(State::default()),
            wake: watch::channel(0).0,
            evictions: AtomicU64::new(0),
            draining: AtomicBool::new(false),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Woken (the value changes) when a slot may have become free or
    /// dispatch resumes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }

    fn wake_all(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Whether a replica of an app with these needs may ever run on one of
    /// `slots` (a pinned run that none of them can host would wait forever).
    pub fn can_host_on(&self, app: &str, needs: &AppNeeds, slots: &[SlotId]) -> bool {
        matches!(
            place_on(&self.layout, app, needs, &[], false, Some(slots)),
            Decision::Place { .. }
        )
    }

    /// Why no slot here can ever host an app with these needs, if none can.
    pub fn never(&self, app: &str, needs: &AppNeeds) -> Option<NoMatchingWorker> {
        match place(&self.layout, app, needs, &[], true) {
            Decision::Never(why) => Some(why),
            _ => None,
        }
    }

    /// A slot for replica `replica` of `app`. `may_evict`: the app has no
    /// replica yet (scaling out never stops other apps), or it is for runs
    /// pinned to slots it has no replica on. `evict` is how the replica is
    /// asked to stop, should another app need its slot. `only`: one of
    /// these slots or none (runs pinned to them).
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        self: &Arc<Self>,
        app: &str,
        replica: usize,
        needs: &AppNeeds,
        keep_warm: bool,
        may_evict: bool,
        evict: Evictor,
        only: Option<&[SlotId]>,
    ) -> Grant {
        let mut state = self.lock();
        let now = Instant::now();
        let clock = tokio::time::Instant::now();
        state.reservations.retain(|_, r| r.until > clock);
        // An eviction for this app is still under way (its victims are
        // stopping): it waits for that one. A new decision would find the
        // stopping victims neither free nor evictable and stop a second app.
        let evicting = state.reservations.iter().any(|(slot, r)| {
            r.app == app
                && state
                    .residents
                    .values()
                    .any(|e| e.slot.id == *slot && e.stopping)
        });
        if evicting {
            return Grant::Evicting;
        }
        let mut residents: Vec<Resident> = state
            .residents
            .iter()
            .map(|(id, e)| Resident {
                replica: *id,
                app: e.app.clone(),
                slot: e.slot.id,
                vram_gb: e.vram_gb,
                busy: e.busy > 0,
                keep_warm: e.keep_warm,
                held_by_session: false,
                starting: e.starting,
                stopping: e.stopping,
                last_used: e.last_used,
            })
            .collect();
        // A slot reserved for another app counts as held by it (and is
        // never a victim); ids past every resident's.
        residents.extend(state.reservations.iter().filter(|(_, r)| r.app != app).map(
            |(slot, r)| Resident {
                replica: u64::MAX - slot.0 as u64,
                app: r.app.clone(),
                slot: *slot,
                vram_gb: r.vram_gb,
                busy: false,
                keep_warm: false,
                held_by_session: false,
                starting: true,
                stopping: false,
                last_used: now,
            },
        ));
        match place_on(&self.layout, app, needs, &residents, may_evict, only) {
            Decision::Unbounded => Grant::Start(Lease {
                broker: self.clone(),
                id: None,
                slot: None,
                reported_busy: 0,
            }),
            Decision::Place { slot } => {
                state.reservations.retain(|_, r| r.app != app);
                let slot = self.layout.slot(slot).clone();
                state.next_id += 1;
                let id = state.next_id;
                state.residents.insert(
                    id,
                    Entry {
                        app: app.to_string(),
                        replica,
                        slot: slot.clone(),
                        vram_gb: needs.vram_gb,
                        busy: 0,
                        starting: true,
                        keep_warm,
                        stopping: false,
                        last_used: Instant::now(),
                        evict,
                    },
                );
                Grant::Start(Lease {
                    broker: self.clone(),
                    id: Some(id),
                    slot: Some(slot),
                    reported_busy: 0,
                })
            }
            Decision::Evict { slot, victims } => {
                let until = clock + RESERVATION;
                state.reservations.insert(
                    slot,
                    Reservation {
                        app: app.to_string(),
                        vram_gb: needs.vram_gb,
                        until,
                    },
                );
                let mut asks = Vec::new();
                for victim in &victims {
                    if let Some(e) = state.residents.get_mut(victim) {
                        e.stopping = true;
                        tracing::info!(
                            app = %e.app,
                            replica = e.replica,
                            slot = %e.slot,
                            "evicting the least recently used idle replica for {app}"
                        );
                        asks.push(e.evict.clone());
                    }
                }
                drop(state);
                for ask in asks {
                    ask();
                }
                self.wake_at(until);
                Grant::Evicting
            }
            Decision::Wait { reason } => Grant::Wait(reason),
            Decision::Never(why) => Grant::Never(why),
        }
    }

    /// Wakes every waiting scheduler at `until` (a reservation's expiry:
    /// nothing else may happen then, and the apps waiting behind it must
    /// ask again).
    fn wake_at(self: &Arc<Self>, until: tokio::time::Instant) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let broker = Arc::downgrade(self);
        runtime.spawn(async move {
            tokio::time::sleep_until(until).await;
            if let Some(broker) = broker.upgrade() {
                broker.wake_all();
            }
        });
    }

    /// `app` no longer wants the slots reserved for it (no task of it
    /// waits): the apps waiting behind them ask again.
    pub fn give_up_reservation(&self, app: &str) {
        let mut state = self.lock();
        let before = state.reservations.len();
        state.reservations.retain(|_, r| r.app != app);
        let gave_up = state.reservations.len() != before;
        drop(state);
        if gave_up {
            self.wake_all();
        }
    }

    fn update(&self, id: Option<u64>, change: impl FnOnce(&mut Entry)) {
        if let Some(id) = id {
            if let Some(e) = self.lock().residents.get_mut(&id) {
                change(e);
            }
        }
    }

    fn release(&self, id: u64) {
        let removed = self.lock().residents.remove(&id);
        if removed.is_some() {
            self.wake_all();
        }
    }

    /// How many of `app`'s queued tasks wait for a slot (0: none).
    pub fn set_waiting(&self, app: &str, tasks: usize) {
        let mut state = self.lock();
        if tasks == 0 {
            state.waiting.remove(app);
        } else {
            state.waiting.insert(app.to_string(), tasks);
        }
    }

    /// A replica was stopped for another app.
    pub fn count_eviction(&self) {
        self.evictions.fetch_add(1, Ordering::Relaxed);
    }

    pub fn evictions_total(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Pauses (true) or resumes dispatch on the whole engine.
    pub fn set_draining(&self, draining: bool) {
        let was = self.draining.swap(draining, Ordering::SeqCst);
        if was && !draining {
            self.wake_all();
        }
    }

    /// The slot view of this machine.
    pub fn view(&self) -> EngineView {
        let readings = self.layout.inventory.readings();
        let state = self.lock();
        let slots = self
            .layout
            .slots
            .iter()
            .map(|slot| {
                let here: Vec<&Entry> = state
                    .residents
                    .values()
                    .filter(|e| e.slot.id == slot.id)
                    .collect();
                let gpus = match &slot.kind {
                    infsh_placement::SlotKind::Cpu { .. } => Vec::new(),
                    infsh_placement::SlotKind::Gpu { gpus } => gpus
                        .iter()
                        .map(|g| {
                            let reading = readings.iter().find(|r| r.index == g.index);
                            GpuView {
                                index: g.index,
                                name: g.name.clone(),
                                vendor: g.vendor.clone(),
                                vram_total_gb: g.vram_gb.or(reading.map(|r| r.memory_total_gb)),
                                vram_used_gb: reading.map(|r| r.memory_used_gb),
                                utilization_percent: reading.and_then(|r| r.utilization_percent),
                            }
                        })
                        .collect(),
                };
                SlotView {
                    id: slot.id.0,
                    kind: if slot.is_gpu() { "gpu" } else { "cpu" }.into(),
                    name: slot.to_string(),
                    gpus,
                    replicas: here.iter().map(|e| replica_id(&e.app, e.replica)).collect(),
                    running_tasks: here.iter().map(|e| e.busy).sum(),
                }
            })
            .collect();
        EngineView {
            name: self.layout.name.clone(),
            inventory: self.layout.inventory.source.as_str().into(),
            draining: self.is_draining(),
            cpu_slots: match self.layout.cpu {
                infsh_placement::CpuPolicy::Unbounded => None,
                infsh_placement::CpuPolicy::Slots(n) => Some(n),
            },
            slots,
            evictions_total: self.evictions_total(),
            tasks_waiting_for_slot: state.waiting.values().sum(),
        }
    }
}

/// A slot as a fleet names it after the engine's name: `gpu-1`, `cpu-2`
/// (its kind and its id in the layout, as `GET /workers` shows them).
pub(crate) fn slot_key(slot: &Slot) -> String {
    let kind = if slot.is_gpu() { "gpu" } else { "cpu" };
    format!("{kind}-{}", slot.id.0)
}

impl Lease {
    /// The slot it holds; None for an unbounded CPU replica.
    pub fn slot(&self) -> Option<&Slot> {
        self.slot.as_ref()
    }

    /// The replica is up: from now on it may be a victim while idle, so
    /// the schedulers that wait for a slot look again.
    pub fn ready(&self) {
        if self.id.is_none() {
            return;
        }
        self.broker.update(self.id, |e| {
            e.starting = false;
            e.last_used = Instant::now();
        });
        self.broker.wake_all();
    }

    /// Tasks running on the replica now (it was used now). Going idle
    /// wakes the schedulers that wait for a slot: it may now be a victim.
    pub fn set_busy(&mut self, tasks: usize) {
        if self.id.is_none() || tasks == self.reported_busy {
            return;
        }
        let went_idle = tasks == 0;
        self.reported_busy = tasks;
        self.broker.update(self.id, |e| {
            e.busy = tasks;
            e.last_used = Instant::now();
        });
        if went_idle {
            self.broker.wake_all();
        }
    }

    /// The replica was asked to stop but took a task meanwhile: it stays,
    /// its slot is no longer kept for the app it was to be freed for, and
    /// the waiters ask again.
    pub fn eviction_refused(&self) {
        self.broker.update(self.id, |e| e.stopping = false);
        if let Some(slot) = &self.slot {
            self.broker.lock().reservations.remove(&slot.id);
        }
        self.broker.wake_all();
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.broker.release(id);
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("id", &self.id)
            .field("slot", &self.slot.as_ref().map(Slot::to_string))
            .finish()
    }
}
