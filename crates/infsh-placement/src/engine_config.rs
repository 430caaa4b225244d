//! `engine.yml`: the worker layout of one machine, in the platform's engine
//! format (`name`, `workers.cpu.count`, `workers.gpu[].gpus`), plus what infsh
//! adds: an `inventory` of GPUs for hosts without NVIDIA's management
//! library, and per-app `apps:` overrides of the bounds in `inf.yml`.
//!
//! Keys the platform's engine reads and infsh does not (`api_url`,
//! `api_key`, `runtime`) are accepted and ignored, so one file serves both.
//! Inside `workers`, `inventory` and `apps`, an unknown key is an error: a
//! typo there (`gpu: [0]` for `gpus: [0]`) would otherwise silently change
//! what runs where. Every error names the file, the line and the key.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use infsh_core::yaml::{error_at, location, null_default};
use infsh_core::{AppRef, Quantity};
use serde::{Deserialize, Deserializer};

/// The parsed `engine.yml`. [`EngineConfig::default`] is "no config file":
/// detected GPUs, one slot each, CPU apps without a limit.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct EngineConfig {
    /// Shown in listings; the host name when absent.
    pub name: Option<String>,
    #[serde(deserialize_with = "null_default")]
    pub workers: Workers,
    pub inventory: Option<DeclaredInventory>,
    /// Per-app overrides, keyed `namespace/name`; they win over `inf.yml`.
    #[serde(deserialize_with = "null_default")]
    pub apps: BTreeMap<String, AppOverrides>,
}

/// `workers:`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Workers {
    /// `cpu: {count: N}`: at most N CPU replicas resident. Absent: no limit.
    pub cpu: Option<CpuWorkers>,
    /// One slot per entry.
    #[serde(deserialize_with = "null_default")]
    pub gpu: Vec<GpuWorker>,
}

/// `workers.cpu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuWorkers {
    pub count: usize,
}

/// One entry of `workers.gpu`: a slot over these GPUs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuWorker {
    #[serde(deserialize_with = "gpu_indexes")]
    pub gpus: Vec<u32>,
}

/// `inventory:`: GPUs declared instead of detected.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeclaredInventory {
    #[serde(deserialize_with = "null_default")]
    pub gpus: Vec<DeclaredGpu>,
    /// The machine's memory, instead of reading /proc/meminfo.
    pub ram: Option<Quantity>,
}

/// One declared GPU.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredGpu {
    pub index: u32,
    #[serde(default)]
    pub name: Option<String>,
    /// Per GPU, with inf.yml's size rules (`80GB`, or `80`: plain numbers
    /// under 1000 are GB).
    #[serde(default)]
    pub vram: Option<Quantity>,
    /// `nvidia` when absent (what NVML would have found).
    #[serde(default)]
    pub vendor: Option<String>,
}

/// `apps.<namespace/name>`, and inf.yml's `infsh:` block: replica bounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppOverrides {
    pub min_replicas: Option<usize>,
    pub max_replicas: Option<usize>,
    /// Tasks one replica runs at once.
    pub concurrency: Option<usize>,
    /// Never evicted while the engine runs.
    pub keep_warm: Option<bool>,
}

impl AppOverrides {
    /// `self` where set, `base` elsewhere: the engine config over inf.yml.
    pub fn over(self, base: AppOverrides) -> AppOverrides {
        AppOverrides {
            min_replicas: self.min_replicas.or(base.min_replicas),
            max_replicas: self.max_replicas.or(base.max_replicas),
            concurrency: self.concurrency.or(base.concurrency),
            keep_warm: self.keep_warm.or(base.keep_warm),
        }
    }

    /// The problems of one set of bounds, each prefixed by `key`.
    fn problems(&self, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.max_replicas == Some(0) {
            out.push(format!("{key}.max_replicas: must be at least 1"));
        }
        if self.concurrency == Some(0) {
            out.push(format!("{key}.concurrency: must be at least 1"));
        }
        if let (Some(min), Some(max)) = (self.min_replicas, self.max_replicas) {
            if min > max {
                out.push(format!(
                    "{key}: min_replicas ({min}) is more than max_replicas ({max})"
                ));
            }
        }
        out
    }
}

/// Why an engine config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read engine config {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Malformed YAML or a key of the wrong shape; the message starts with
    /// the key's path (`workers.gpu[1].gpus: ...`) where the parser knows it.
    #[error("{}: {message}", location(.path, *.line, *.column))]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// Well-formed, but contradicts itself (a GPU in two slots, bad bounds).
    #[error("{}: {key}: {message}", .path.display())]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl EngineConfig {
    /// Reads, parses and checks an engine config file.
    pub fn load(path: &Path) -> Result<EngineConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        EngineConfig::parse(&text, path)
    }

    /// Parses and checks config text; `path` only names the source in errors.
    /// An empty document is the default config.
    pub fn parse(text: &str, path: &Path) -> Result<EngineConfig, ConfigError> {
        let doc: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| parse_error(path, &e))?;
        if doc.is_null() {
            return Ok(EngineConfig::default());
        }
        if !doc.is_mapping() {
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                line: 1,
                column: 1,
                message: "expected a mapping (name: ..., workers: ...) at the top level".into(),
            });
        }
        // From the text, not from `doc`, so that errors keep their line.
        let config: EngineConfig =
            serde_norway::from_str(text).map_err(|e| parse_error(path, &e))?;
        config
            .check()
            .map_err(|(key, message)| ConfigError::Invalid {
                path: path.to_path_buf(),
                key,
                message,
            })?;
        Ok(config)
    }

    /// The checks that need the whole document: no GPU in two slots or
    /// declared twice, app keys that name apps, bounds that make sense.
    fn check(&self) -> Result<(), (String, String)> {
        let mut owner: BTreeMap<u32, usize> = BTreeMap::new();
        for (i, worker) in self.workers.gpu.iter().enumerate() {
            for &gpu in &worker.gpus {
                if let Some(first) = owner.insert(gpu, i) {
                    if first != i {
                        return Err((
                            format!("workers.gpu[{i}].gpus"),
                            format!("GPU {gpu} is already in workers.gpu[{first}]; a GPU belongs to one slot"),
                        ));
                    }
                }
            }
        }
        if let Some(inventory) = &self.inventory {
            if let Some(ram) = &inventory.ram {
                if !matches!(ram.as_gigabytes(), Some(gb) if gb > 0.0) {
                    return Err((
                        "inventory.ram".into(),
                        format!("{:?} is not a size such as 64GB", ram.to_string()),
                    ));
                }
            }
            let mut seen = BTreeSet::new();
            for (i, gpu) in inventory.gpus.iter().enumerate() {
                if !seen.insert(gpu.index) {
                    return Err((
                        format!("inventory.gpus[{i}].index"),
                        format!("GPU {} is declared twice", gpu.index),
                    ));
                }
                if let Some(vram) = &gpu.vram {
                    if !matches!(vram.as_gigabytes(), Some(gb) if gb > 0.0) {
                        return Err((
                            format!("inventory.gpus[{i}].vram"),
                            format!("{:?} is not a size such as 80GB", vram.to_string()),
                        ));
                    }
                }
            }
        }
        for (key, bounds) in &self.apps {
            let at = format!("apps.{key}");
            match key.parse::<AppRef>() {
                Ok(r)
                    if r.namespace().is_some()
                        && r.version().is_none()
                        && r.function().is_none() => {}
                Ok(_) => {
                    return Err((at, "expected an app as NAMESPACE/NAME".into()));
                }
                Err(e) => return Err((at, e.to_string())),
            }
            if let Some(problem) = bounds.problems(&at).into_iter().next() {
                let (key, message) = problem.split_once(": ").unwrap_or((&at, &problem));
                return Err((key.to_string(), message.to_string()));
            }
        }
        Ok(())
    }

    /// The overrides for one app, if the config has any.
    pub fn overrides_for(&self, namespace: &str, name: &str) -> AppOverrides {
        self.apps
            .get(&format!("{namespace}/{name}"))
            .copied()
            .unwrap_or_default()
    }
}

/// Checks inf.yml's `infsh:` bounds the same way as the config's; the
/// problems name the key (`infsh.max_replicas: must be at least 1`).
pub fn manifest_bound_problems(bounds: &AppOverrides) -> Vec<String> {
    bounds.problems("infsh")
}

fn parse_error(path: &Path, e: &serde_norway::Error) -> ConfigError {
    let (line, column, message) = error_at(e);
    ConfigError::Parse {
        path: path.to_path_buf(),
        line,
        column,
        message,
    }
}

fn gpu_indexes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    use serde::de::Error;
    let gpus = Vec::<u32>::deserialize(d)?;
    if gpus.is_empty() {
        return Err(D::Error::custom(
            "`gpus` needs at least one GPU index, such as [0]",
        ));
    }
    let mut seen = BTreeSet::new();
    if let Some(dup) = gpus.iter().find(|g| !seen.insert(**g)) {
        return Err(D::Error::custom(format!(
            "GPU {dup} is listed twice in `gpus`"
        )));
    }
    Ok(gpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EngineConfig, ConfigError> {
        EngineConfig::parse(text, Path::new("engine.yml"))
    }

    const FULL: &str = "\
api_url: https://api.inference.sh
api_key: inf_not_read
name: gpu-box-1
runtime: bare
workers:
  cpu: {count: 2}
  gpu:
    - gpus: [0]
    - gpus: [1]
    - gpus: [2, 3]
inventory:
  gpus:
    - {index: 0, name: \"NVIDIA H100 80GB HBM3\", vram: 80GB}
    - {index: 1, vram: 80}
    - {index: 2, vram: 24GB, vendor: nvidia}
    - {index: 3, vram: \"24 GiB\"}
apps:
  acme/flux: {max_replicas: 2, keep_warm: true}
";

    #[test]
    fn reads_the_platform_format_and_ignores_its_other_keys() {
        let c = parse(FULL).unwrap();
        assert_eq!(c.name.as_deref(), Some("gpu-box-1"));
        assert_eq!(c.workers.cpu, Some(CpuWorkers { count: 2 }));
        let slots: Vec<_> = c.workers.gpu.iter().map(|w| w.gpus.clone()).collect();
        assert_eq!(slots, vec![vec![0], vec![1], vec![2, 3]]);
        let inv = c.inventory.as_ref().unwrap();
        assert_eq!(inv.gpus.len(), 4);
        assert_eq!(
            inv.gpus[1].vram.as_ref().unwrap().as_gigabytes(),
            Some(80.0)
        );
        let flux = c.overrides_for("acme", "flux");
        assert_eq!(flux.max_replicas, Some(2));
        assert_eq!(flux.keep_warm, Some(true));
        assert_eq!(c.overrides_for("acme", "other"), AppOverrides::default());
    }

    #[test]
    fn an_empty_file_is_the_default() {
        assert_eq!(parse("").unwrap(), EngineConfig::default());
        assert_eq!(parse("# nothing\n").unwrap(), EngineConfig::default());
        assert_eq!(parse("workers:\napps:\n").unwrap(), EngineConfig::default());
    }

    #[test]
    fn malformed_yaml_names_file_and_line() {
        let e = parse("name: x\nworkers:\n  gpu: [{gpus: [0]}\n").unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("engine.yml:"), "{text}");
        assert!(
            matches!(e, ConfigError::Parse { line, .. } if line >= 3),
            "{e:?}"
        );
    }

    #[test]
    fn a_typo_inside_workers_is_an_error_with_the_key_and_line() {
        let e = parse("workers:\n  gpu:\n    - gpus: [0]\n    - gpu: [1]\n").unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("engine.yml:4:")
                && text.contains("workers.gpu[1]")
                && text.contains("unknown field `gpu`"),
            "{text}"
        );
    }

    #[test]
    fn an_empty_gpu_list_is_refused_where_it_is() {
        let e = parse("workers:\n  gpu:\n    - gpus: []\n").unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("engine.yml:3:"), "{text}");
        assert!(
            text.contains("workers.gpu[0]: `gpus` needs at least one GPU index, such as [0]"),
            "{text}"
        );
    }

    #[test]
    fn a_gpu_in_two_slots_is_refused() {
        let e = parse("workers:\n  gpu:\n    - gpus: [0, 1]\n    - gpus: [1]\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "engine.yml: workers.gpu[1].gpus: GPU 1 is already in workers.gpu[0]; a GPU belongs to one slot"
        );
        let e = parse("workers:\n  gpu:\n    - gpus: [2, 2]\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("workers.gpu[0]: GPU 2 is listed twice in `gpus`"),
            "{e}"
        );
    }

    #[test]
    fn a_gpu_declared_twice_is_refused() {
        let e = parse("inventory:\n  gpus:\n    - {index: 0}\n    - {index: 0}\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "engine.yml: inventory.gpus[1].index: GPU 0 is declared twice"
        );
    }

    #[test]
    fn a_vram_that_is_not_a_size_is_refused() {
        let e = parse("inventory:\n  gpus:\n    - {index: 0, vram: lots}\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "engine.yml: inventory.gpus[0].vram: \"lots\" is not a size such as 80GB"
        );
    }

    #[test]
    fn app_keys_and_bounds_are_checked() {
        let e = parse("apps:\n  flux: {max_replicas: 1}\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "engine.yml: apps.flux: expected an app as NAMESPACE/NAME"
        );
        let e = parse("apps:\n  acme/flux: {max_replicas: 0}\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "engine.yml: apps.acme/flux.max_replicas: must be at least 1"
        );
        let e = parse("apps:\n  acme/flux: {min_replicas: 3, max_replicas: 2}\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "engine.yml: apps.acme/flux: min_replicas (3) is more than max_replicas (2)"
        );
        let e = parse("apps:\n  acme/flux: {max_replica: 2}\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `max_replica`"), "{e}");
    }

    #[test]
    fn the_config_wins_over_the_manifest_field_by_field() {
        let config = AppOverrides {
            max_replicas: Some(2),
            ..Default::default()
        };
        let manifest = AppOverrides {
            max_replicas: Some(5),
            keep_warm: Some(true),
            ..Default::default()
        };
        let merged = config.over(manifest);
        assert_eq!(merged.max_replicas, Some(2));
        assert_eq!(merged.keep_warm, Some(true));
        assert_eq!(
            manifest_bound_problems(&AppOverrides {
                concurrency: Some(0),
                ..Default::default()
            }),
            vec!["infsh.concurrency: must be at least 1".to_string()]
        );
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let e = EngineConfig::load(Path::new("/nonexistent/engine.yml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot read engine config /nonexistent/engine.yml: "),
            "{e}"
        );
    }
}
