//! For the fuzz targets' stable tests (`crates/*/tests/*_fuzz.rs`): a
//! deterministic generator for their seeded mutations, and the inputs the
//! fuzzer keeps under `fuzz/` (its seeds, and inputs it once failed on).
//! Each target keeps its own mutations: what is interesting to insert
//! differs between a frame decoder and an HTTP request.

use std::path::PathBuf;

/// xorshift64*: deterministic, no dependency.
pub struct Rng(pub u64);

impl Rng {
    #[allow(clippy::should_implement_trait)] // not an iterator: it never ends
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// How many mutations a test runs: `INFSH_FUZZ_ITERATIONS`, else `default`.
pub fn iterations(default: usize) -> usize {
    std::env::var("INFSH_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One fuzz target's stable run: `target` on every seed, on every stored
/// input of `name` (there must be some), then on [`iterations`]`(default)`
/// mutations of the seeds, generated from `rng_seed` by `mutate`.
pub fn drive(
    name: &str,
    seeds: &[Vec<u8>],
    rng_seed: u64,
    default_iterations: usize,
    mut mutate: impl FnMut(&mut Rng, &mut Vec<u8>, &[Vec<u8>]),
    mut target: impl FnMut(&[u8]),
) {
    for seed in seeds {
        target(seed);
    }
    let inputs = fuzz_inputs(name);
    assert!(!inputs.is_empty(), "fuzz/seeds/{name} is missing");
    for path in inputs {
        target(&std::fs::read(path).unwrap());
    }
    let mut rng = Rng(rng_seed);
    for _ in 0..iterations(default_iterations) {
        let mut data = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut data, seeds);
        target(&data);
    }
}

/// The files under `fuzz/seeds/<target>/` and `fuzz/regressions/<target>/`.
pub fn fuzz_inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = crate::repo_root().join("fuzz");
    let mut out = Vec::new();
    for dir in ["seeds", "regressions"] {
        if let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) {
            out.extend(entries.map(|e| e.unwrap().path()));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_deterministic_and_bounded() {
        let (mut a, mut b) = (Rng(42), Rng(42));
        let xs: Vec<u64> = (0..5).map(|_| a.next()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next()).collect();
        assert_eq!(xs, ys);
        assert!(xs.windows(2).all(|w| w[0] != w[1]));
        assert!((0..1000).all(|_| a.below(7) < 7));
        assert_eq!(a.below(0), 0);
    }

    #[test]
    fn drive_runs_seeds_stored_inputs_then_mutations() {
        let seeds = vec![b"ab".to_vec(), b"cd".to_vec()];
        let mut seen = Vec::new();
        drive(
            "frame_decode",
            &seeds,
            7,
            3,
            |rng, data, _| data.push(b'0' + rng.below(10) as u8),
            |data| seen.push(data.to_vec()),
        );
        let stored = fuzz_inputs("frame_decode").len();
        assert_eq!(seen.len(), 2 + stored + iterations(3));
        assert_eq!(&seen[..2], &seeds[..]);
        assert!(seen[2 + stored..].iter().all(|d| d.len() == 3));
    }

    #[test]
    #[should_panic(expected = "fuzz/seeds/no_such_target is missing")]
    fn drive_needs_stored_inputs() {
        drive("no_such_target", &[vec![]], 1, 0, |_, _, _| {}, |_| {});
    }

    #[test]
    fn the_seed_folders_are_found() {
        assert!(!fuzz_inputs("frame_decode").is_empty());
        assert!(fuzz_inputs("no_such_target").is_empty());
    }
}
