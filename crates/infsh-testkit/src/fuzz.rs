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
    fn the_seed_folders_are_found() {
        assert!(!fuzz_inputs("frame_decode").is_empty());
        assert!(fuzz_inputs("no_such_target").is_empty());
    }
}
