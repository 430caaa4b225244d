//! What an app asks of a slot, read from `inf.yml`'s `resources:`
//! (`gpu.count`, `gpu.vram` per GPU, `gpu.type`, `ram`), with inf.yml's
//! size rules (plain numbers under 1000 are GB). docs/gpus.md has the table.

use std::fmt;

use infsh_core::{Manifest, Quantity};

/// Which GPUs an app may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuKind {
    /// `type: any` or no type.
    Any,
    /// `type: nvidia` (or `amd`, `apple`, ...): every GPU of the slot must be
    /// of this vendor.
    Vendor(String),
}

/// An app's needs. `gpus == 0` is a CPU app.
#[derive(Debug, Clone, PartialEq)]
pub struct AppNeeds {
    pub gpus: u32,
    /// Per GPU, in GB; None when undeclared (or 0), which means the app takes
    /// a slot alone.
    pub vram_gb: Option<f64>,
    pub kind: GpuKind,
    /// In GB, checked against the machine's memory.
    pub ram_gb: Option<f64>,
}

/// A `resources:` value placement cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {value:?} {expected}")]
pub struct NeedsError {
    pub key: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl AppNeeds {
    /// A CPU app with no declared memory.
    pub fn cpu() -> AppNeeds {
        AppNeeds {
            gpus: 0,
            vram_gb: None,
            kind: GpuKind::Any,
            ram_gb: None,
        }
    }

    /// Reads `resources:`. `type: none` makes a CPU app whatever the count
    /// says: it is the author saying the app must not see a GPU.
    pub fn from_manifest(manifest: &Manifest) -> Result<AppNeeds, NeedsError> {
        let gpu = &manifest.resources.gpu;
        let kind = match gpu.kind.as_deref().map(|k| k.trim().to_ascii_lowercase()) {
            None => Some(GpuKind::Any),
            Some(k) if k.is_empty() || k == "any" => Some(GpuKind::Any),
            Some(k) if k == "none" => None,
            Some(k) => Some(GpuKind::Vendor(k)),
        };
        let count = match &gpu.count {
            None => 0,
            Some(q) => whole_number(q).ok_or_else(|| NeedsError {
                key: "resources.gpu.count",
                value: q.to_string(),
                expected: "is not a whole number of GPUs",
            })?,
        };
        let vram_gb = size(gpu.vram.as_ref(), "resources.gpu.vram")?;
        let ram_gb = size(manifest.resources.ram.as_ref(), "resources.ram")?;
        Ok(match kind {
            None => AppNeeds {
                ram_gb,
                ..AppNeeds::cpu()
            },
            Some(kind) => AppNeeds {
                gpus: count,
                vram_gb: if count == 0 { None } else { vram_gb },
                kind,
                ram_gb,
            },
        })
    }

    pub fn is_gpu(&self) -> bool {
        self.gpus > 0
    }
}

fn whole_number(q: &Quantity) -> Option<u32> {
    let n = q.as_f64()?;
    (n >= 0.0 && n.fract() == 0.0 && n <= u32::MAX as f64).then_some(n as u32)
}

/// A size in GB; 0 counts as undeclared.
fn size(q: Option<&Quantity>, key: &'static str) -> Result<Option<f64>, NeedsError> {
    let Some(q) = q else { return Ok(None) };
    match q.as_gigabytes() {
        Some(gb) if gb > 0.0 => Ok(Some(gb)),
        Some(0.0) => Ok(None),
        _ => Err(NeedsError {
            key,
            value: q.to_string(),
            expected: "is not a size such as 24GB",
        }),
    }
}

/// `a CPU slot`, `1 GPU`, `2 nvidia GPUs with 80 GB each`, `... and 64 GB of RAM`.
impl fmt::Display for AppNeeds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.gpus == 0 {
            f.write_str("a CPU slot")?;
        } else {
            let vendor = match &self.kind {
                GpuKind::Any => String::new(),
                GpuKind::Vendor(v) => format!("{v} "),
            };
            let plural = if self.gpus == 1 { "" } else { "s" };
            write!(f, "{} {vendor}GPU{plural}", self.gpus)?;
            if let Some(vram) = self.vram_gb {
                let each = if self.gpus == 1 { "" } else { " each" };
                write!(f, " with {} GB{each}", gb(vram))?;
            }
        }
        if let Some(ram) = self.ram_gb {
            write!(f, " and {} GB of RAM", gb(ram))?;
        }
        Ok(())
    }
}

/// A GB figure without float noise: `24`, `0.5`, `25.17`.
pub(crate) fn gb(value: f64) -> String {
    let rounded = (value * 100.0).round() / 100.0;
    format!("{rounded}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn needs(resources: &str) -> Result<AppNeeds, NeedsError> {
        let manifest = Manifest::parse(
            &format!("name: a\nresources:\n{resources}"),
            Path::new("inf.yml"),
        )
        .unwrap();
        AppNeeds::from_manifest(&manifest)
    }

    #[test]
    fn no_resources_is_a_cpu_app() {
        let manifest = Manifest::default();
        let n = AppNeeds::from_manifest(&manifest).unwrap();
        assert_eq!(n, AppNeeds::cpu());
        assert_eq!(n.to_string(), "a CPU slot");
    }

    #[test]
    fn gpu_fields_follow_inf_yml_size_rules() {
        let n = needs("  gpu: {count: 2, vram: 80, type: NVIDIA}\n  ram: \"64 GiB\"\n").unwrap();
        assert_eq!(n.gpus, 2);
        assert_eq!(n.vram_gb, Some(80.0));
        assert_eq!(n.kind, GpuKind::Vendor("nvidia".into()));
        assert_eq!(n.ram_gb, Some(64.0));
        assert_eq!(
            n.to_string(),
            "2 nvidia GPUs with 80 GB each and 64 GB of RAM"
        );
        let one = needs("  gpu: {count: \"1\", vram: 24GB}\n").unwrap();
        assert_eq!(one.to_string(), "1 GPU with 24 GB");
    }

    #[test]
    fn zero_or_absent_count_is_cpu_and_zero_vram_is_undeclared() {
        assert!(!needs("  gpu: {vram: 24GB}\n").unwrap().is_gpu());
        assert!(!needs("  gpu: {count: 0}\n").unwrap().is_gpu());
        let n = needs("  gpu: {count: 1, vram: 0}\n").unwrap();
        assert_eq!((n.gpus, n.vram_gb), (1, None));
    }

    #[test]
    fn type_none_is_a_cpu_app_whatever_the_count() {
        let n = needs("  gpu: {count: 2, type: none}\n  ram: 8\n").unwrap();
        assert_eq!(n.gpus, 0);
        assert_eq!(n.ram_gb, Some(8.0));
    }

    #[test]
    fn unreadable_values_name_the_key() {
        assert_eq!(
            needs("  gpu: {count: two}\n").unwrap_err().to_string(),
            "resources.gpu.count: \"two\" is not a whole number of GPUs"
        );
        assert_eq!(
            needs("  gpu: {count: 1.5}\n").unwrap_err().to_string(),
            "resources.gpu.count: \"1.5\" is not a whole number of GPUs"
        );
        assert_eq!(
            needs("  gpu: {count: 1, vram: lots}\n")
                .unwrap_err()
                .to_string(),
            "resources.gpu.vram: \"lots\" is not a size such as 24GB"
        );
        assert_eq!(
            needs("  ram: true\n").unwrap_err().to_string(),
            "resources.ram: \"true\" is not a size such as 24GB"
        );
    }
}
