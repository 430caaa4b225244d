//! The placement rules, one test each, on declared layouts.

use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::{EngineConfig, Inventory};

/// GPUs 0 and 1 with 80 GB, 2 and 3 with 24 GB; slots [0], [1], [2, 3];
/// `cpu` CPU slots when given; 64 GB of RAM.
fn box_with(cpu: Option<usize>) -> Layout {
    let cpu = cpu
        .map(|n| format!("  cpu: {{count: {n}}}\n"))
        .unwrap_or_default();
    let text = [
        "workers:\n",
        &cpu,
        "  gpu:\n    - gpus: [0]\n    - gpus: [1]\n    - gpus: [2, 3]\n",
        "inventory:\n  ram: 64GB\n  gpus:\n",
        "    - {index: 0, vram: 80GB}\n    - {index: 1, vram: 80GB}\n",
        "    - {index: 2, vram: 24GB}\n    - {index: 3, vram: 24GB}\n",
    ]
    .concat();
    let config = EngineConfig::parse(&text, Path::new("engine.yml")).unwrap();
    Layout::build(&config, Inventory::for_config(&config)).unwrap()
}

fn gpu(count: u32, vram: Option<f64>) -> AppNeeds {
    AppNeeds {
        gpus: count,
        vram_gb: vram,
        ..AppNeeds::cpu()
    }
}

struct Clock(Instant);

impl Clock {
    fn at(&self, seconds: u64) -> Instant {
        self.0 + Duration::from_secs(seconds)
    }
}

fn resident(replica: u64, app: &str, slot: usize, vram: Option<f64>, used: Instant) -> Resident {
    Resident {
        replica,
        app: app.into(),
        slot: SlotId(slot),
        vram_gb: vram,
        busy: false,
        keep_warm: false,
        held_by_session: false,
        starting: false,
        stopping: false,
        last_used: used,
    }
}

#[test]
fn two_replicas_of_one_app_see_different_gpus() {
    let layout = box_with(None);
    let t = Clock(Instant::now());
    let needs = gpu(1, Some(10.0));
    assert_eq!(
        place(&layout, "acme/a", &needs, &[], true),
        Decision::Place { slot: SlotId(0) }
    );
    // 10 GB would fit beside the first replica, but a slot without this app wins.
    let first = [resident(1, "acme/a", 0, Some(10.0), t.at(0))];
    assert_eq!(
        place(&layout, "acme/a", &needs, &first, false),
        Decision::Place { slot: SlotId(1) }
    );
}

#[test]
fn a_two_gpu_app_lands_on_the_two_gpu_slot() {
    let layout = box_with(None);
    assert_eq!(
        place(&layout, "acme/big", &gpu(2, Some(20.0)), &[], true),
        Decision::Place { slot: SlotId(2) }
    );
    // A one-GPU app prefers a one-GPU slot even when the pair is free.
    assert_eq!(
        place(&layout, "acme/small", &gpu(1, None), &[], true),
        Decision::Place { slot: SlotId(0) }
    );
}

#[test]
fn declared_vram_shares_a_slot_and_the_fullest_fitting_slot_wins() {
    let layout = box_with(None);
    let t = Clock(Instant::now());
    let residents = [
        resident(1, "acme/a", 0, Some(30.0), t.at(0)),
        resident(2, "acme/b", 1, Some(60.0), t.at(0)),
    ];
    // 20 GB fits beside either; slot 1 would be fuller (0 GB left).
    assert_eq!(
        place(&layout, "acme/c", &gpu(1, Some(20.0)), &residents, true),
        Decision::Place { slot: SlotId(1) }
    );
    // 40 GB fits only beside the 30 GB app.
    assert_eq!(
        place(&layout, "acme/c", &gpu(1, Some(40.0)), &residents, true),
        Decision::Place { slot: SlotId(0) }
    );
}

#[test]
fn undeclared_vram_takes_a_slot_alone() {
    let layout = box_with(None);
    let t = Clock(Instant::now());
    let residents = [
        resident(1, "acme/whole", 0, None, t.at(0)),
        resident(2, "acme/b", 1, Some(10.0), t.at(1)),
        resident(3, "acme/pair", 2, Some(1.0), t.at(2)),
    ];
    // Nobody joins the whole-GPU app: 5 GB goes beside acme/b.
    assert_eq!(
        place(&layout, "acme/c", &gpu(1, Some(5.0)), &residents, true),
        Decision::Place { slot: SlotId(1) }
    );
    // An app without a VRAM figure joins nobody: the oldest idle replica of a
    // one-GPU slot is stopped for it.
    assert_eq!(
        place(&layout, "acme/c", &gpu(1, None), &residents, true),
        Decision::Evict {
            slot: SlotId(0),
            victims: vec![1]
        }
    );
}

#[test]
fn whole_gpu_apps_take_turns_by_least_recent_use() {
    let layout = box_with(None);
    let t = Clock(Instant::now());
    let residents = [
        resident(1, "acme/a", 0, None, t.at(5)),
        resident(2, "acme/b", 1, None, t.at(3)),
        resident(3, "acme/c", 2, None, t.at(1)),
    ];
    // acme/c is older, but its slot has two GPUs: a one-GPU slot is evicted first.
    assert_eq!(
        place(&layout, "acme/d", &gpu(1, None), &residents, true),
        Decision::Evict {
            slot: SlotId(1),
            victims: vec![2]
        }
    );
    // Scaling out never evicts: it waits.
    assert!(matches!(
        place(&layout, "acme/d", &gpu(1, None), &residents, false),
        Decision::Wait { .. }
    ));
}

#[test]
fn several_small_victims_go_oldest_first_until_it_fits() {
    let layout = box_with(None);
    let t = Clock(Instant::now());
    let residents = [
        resident(1, "acme/a", 0, Some(30.0), t.at(3)),
        resident(2, "acme/b", 0, Some(30.0), t.at(1)),
        resident(3, "acme/c", 0, Some(20.0), t.at(2)),
        resident(9, "acme/x", 1, Some(80.0), t.at(0)),
    ];
    let mut busy = residents.clone();
    busy[3].busy = true;
    // Needs 50 of slot 0's 80: drop b (oldest), then c; a stays.
    assert_eq!(
        place(&layout, "acme/n", &gpu(1, Some(50.0)), &busy, true),
        Decision::Evict {
            slot: SlotId(0),
            victims: vec![2, 3]
        }
    );
    // With slot 1 idle, evicting its one replica (older than c) is better.
    assert_eq!(
        place(&layout, "acme/n", &gpu(1, Some(50.0)), &residents, true),
        Decision::Evict {
            slot: SlotId(1),
            victims: vec![9]
        }
    );
}

#[test]
fn busy_session_held_and_keep_warm_replicas_are_never_evicted() {
    let layout = box_with(None);
    let t = Clock(Instant::now());
    let mut residents = [
        resident(1, "acme/flux", 0, None, t.at(0)),
        resident(2, "acme/sd", 1, None, t.at(0)),
        resident(3, "acme/llm", 2, None, t.at(0)),
    ];
    residents[0].busy = true;
    residents[1].keep_warm = true;
    residents[2].held_by_session = true;
    assert_eq!(
        place(&layout, "acme/new", &gpu(1, None), &residents, true),
        Decision::Wait {
            reason: "waiting for a GPU slot: acme/flux (running a task) holds gpus [0]; \
                     acme/sd (keep_warm) holds gpus [1]; acme/llm (held by a session) holds gpus [2, 3]"
                .into()
        }
    );
}

#[test]
fn starting_and_stopping_replicas_are_never_evicted_and_say_so() {
    let layout = box_with(None);
    let t = Clock(Instant::now());
    let mut residents = [
        resident(1, "acme/flux", 0, None, t.at(0)),
        resident(2, "acme/sd", 1, None, t.at(0)),
        resident(3, "acme/llm", 2, None, t.at(0)),
    ];
    residents[0].starting = true;
    residents[1].stopping = true;
    residents[2].busy = true;
    assert_eq!(
        place(&layout, "acme/new", &gpu(1, None), &residents, true),
        Decision::Wait {
            reason:
                "waiting for a GPU slot: acme/flux (starting) holds gpus [0]; \
                     acme/sd (stopping) holds gpus [1]; acme/llm (running a task) holds gpus [2, 3]"
                    .into()
        }
    );
}

#[test]
fn cpu_apps_use_cpu_slots_only() {
    let t = Clock(Instant::now());
    let cpu = AppNeeds::cpu();
    assert_eq!(
        place(&box_with(None), "acme/cpu", &cpu, &[], true),
        Decision::Unbounded
    );

    let layout = box_with(Some(1)); // slot 3 is `cpu 0`
    assert_eq!(
        place(&layout, "acme/cpu", &cpu, &[], true),
        Decision::Place { slot: SlotId(3) }
    );
    // The GPU slots are free, but a CPU app evicts from its own kind.
    let residents = [resident(1, "acme/old", 3, None, t.at(0))];
    assert_eq!(
        place(&layout, "acme/cpu", &cpu, &residents, true),
        Decision::Evict {
            slot: SlotId(3),
            victims: vec![1]
        }
    );
    let mut busy = residents.clone();
    busy[0].busy = true;
    assert_eq!(
        place(&layout, "acme/cpu", &cpu, &busy, true),
        Decision::Wait {
            reason: "waiting for a CPU slot: acme/old (running a task) holds cpu 0".into()
        }
    );
}

#[test]
fn no_matching_worker_names_the_need_and_the_largest_slot() {
    let layout = box_with(None);
    let refuse = |needs: AppNeeds| match place(&layout, "acme/x", &needs, &[], true) {
        Decision::Never(e) => e.to_string(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        refuse(gpu(4, None)),
        "acme/x needs 4 GPUs; the largest slot here is gpus [2, 3] (2 GPUs, 24 GB each)"
    );
    assert_eq!(
        refuse(gpu(2, Some(40.0))),
        "acme/x needs 2 GPUs with 40 GB each; the largest slot here is gpus [2, 3] (2 GPUs, 24 GB each)"
    );
    assert_eq!(
        refuse(gpu(1, Some(100.0))),
        "acme/x needs 1 GPU with 100 GB; the largest slot here is gpus [2, 3] (2 GPUs, 24 GB each)"
    );
    assert_eq!(
        refuse(AppNeeds {
            kind: GpuKind::Vendor("amd".into()),
            ..gpu(1, None)
        }),
        "acme/x needs 1 amd GPU; no slot here has amd GPUs (the GPUs here are nvidia)"
    );
    assert_eq!(
        refuse(AppNeeds {
            ram_gb: Some(128.0),
            ..AppNeeds::cpu()
        }),
        "acme/x needs a CPU slot and 128 GB of RAM; this machine has 64 GB of RAM"
    );
    let no_cpu = box_with(Some(0));
    match place(&no_cpu, "acme/x", &AppNeeds::cpu(), &[], true) {
        Decision::Never(e) => assert_eq!(
            e.to_string(),
            "acme/x needs a CPU slot; this engine has no CPU workers (workers.cpu.count is 0)"
        ),
        other => panic!("{other:?}"),
    }
    let bare = Layout::build(&EngineConfig::default(), Inventory::without_gpus(None)).unwrap();
    match place(&bare, "acme/x", &gpu(1, None), &[], true) {
        Decision::Never(e) => {
            assert_eq!(
                e.to_string(),
                "acme/x needs 1 GPU; this machine has no GPU slot"
            )
        }
        other => panic!("{other:?}"),
    }
    // A refusal does not depend on what is resident.
    assert!(matches!(
        place(&bare, "acme/x", &AppNeeds::cpu(), &[], true),
        Decision::Unbounded
    ));
}

/// docs/gpus.md, "A worked example": six apps on the 4-GPU box, then a
/// scale-out, a seventh app and one that can never fit.
#[test]
fn the_worked_example_of_the_gpu_docs() {
    let layout = box_with(Some(2)); // gpus [0], gpus [1], gpus [2, 3], cpu 0, cpu 1
    let t = Clock(Instant::now());
    let mut residents: Vec<Resident> = Vec::new();
    let mut next = 0;
    let mut start =
        |residents: &mut Vec<Resident>, app: &str, needs: &AppNeeds, keep_warm: bool| {
            let Decision::Place { slot } = place(&layout, app, needs, residents, true) else {
                panic!("{app}: {:?}", place(&layout, app, needs, residents, true));
            };
            next += 1;
            residents.push(Resident {
                keep_warm,
                ..resident(next, app, slot.0, needs.vram_gb, t.at(next))
            });
            slot.0
        };
    assert_eq!(
        start(&mut residents, "acme/flux", &gpu(1, Some(40.0)), true),
        0
    );
    assert_eq!(
        start(&mut residents, "acme/sdxl", &gpu(1, Some(20.0)), false),
        0
    );
    assert_eq!(
        start(&mut residents, "acme/tts", &gpu(1, Some(8.0)), false),
        0
    );
    assert_eq!(
        start(&mut residents, "acme/whisper", &gpu(1, None), false),
        1
    );
    assert_eq!(
        start(&mut residents, "acme/llm", &gpu(2, Some(24.0)), false),
        2
    );
    assert_eq!(
        start(&mut residents, "acme/resize", &AppNeeds::cpu(), false),
        3
    );

    // sdxl scales out: nothing fits 20 GB more, and scaling out never evicts.
    assert!(matches!(
        place(&layout, "acme/sdxl", &gpu(1, Some(20.0)), &residents, false),
        Decision::Wait { .. }
    ));
    // upscaler's first replica: [0] cannot be freed (flux is keep_warm); the
    // one-GPU slot [1] wins over the pair: whisper is stopped.
    let whisper = residents
        .iter()
        .find(|r| r.app == "acme/whisper")
        .unwrap()
        .replica;
    assert_eq!(
        place(&layout, "acme/upscaler", &gpu(1, None), &residents, true),
        Decision::Evict {
            slot: SlotId(1),
            victims: vec![whisper]
        }
    );
    match place(&layout, "acme/big", &gpu(2, Some(80.0)), &residents, true) {
        Decision::Never(e) => assert_eq!(
            e.to_string(),
            "acme/big needs 2 GPUs with 80 GB each; the largest slot here is gpus [2, 3] (2 GPUs, 24 GB each)"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_pinned_replica_goes_to_its_slot_evicts_there_or_waits_never_elsewhere() {
    let layout = box_with(None);
    let t = Clock(Instant::now());
    let needs = gpu(1, None);
    let only = [SlotId(1)];
    // Slot 0 would win unpinned.
    assert_eq!(
        place_on(&layout, "acme/a", &needs, &[], false, Some(&only)),
        Decision::Place { slot: SlotId(1) }
    );
    // Slot 1 held by an idle replica of another app, slot 0 free: it is
    // evicted (when allowed), else the replica waits; slot 0 is never taken.
    let held = [resident(1, "acme/b", 1, None, t.at(0))];
    assert_eq!(
        place_on(&layout, "acme/a", &needs, &held, true, Some(&only)),
        Decision::Evict {
            slot: SlotId(1),
            victims: vec![1]
        }
    );
    assert!(matches!(
        place_on(&layout, "acme/a", &needs, &held, false, Some(&only)),
        Decision::Wait { .. }
    ));
    // A CPU app on an engine without CPU slots holds no slot: pinned to a
    // GPU slot, it cannot be placed there.
    assert!(matches!(
        place_on(
            &layout,
            "acme/cpu",
            &AppNeeds::cpu(),
            &[],
            true,
            Some(&only)
        ),
        Decision::Wait { .. }
    ));
}
