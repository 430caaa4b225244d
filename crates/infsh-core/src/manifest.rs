//! `inf.yml`, the app manifest: what an app is called, what it needs
//! (resources, secrets, integrations, env vars), and its default function.
//!
//! Parsing is tolerant, as the platform's is: unknown fields are kept in
//! [`Manifest::extra`], and scalars are accepted where real apps vary
//! (`vram: 24` and `vram: "24GB"`; `OMP_NUM_THREADS: 4` in `env`; a secret
//! given as a bare key). Malformed YAML is an error naming the file, line and
//! column.
//!
//! The YAML crate is `serde_norway`, the maintained fork of the deprecated
//! `serde_yaml`: the same `Value` API (which the tolerant parsing below
//! reads) and libyaml's own error messages and positions.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::yaml::{error_at, location, null_default};

/// The manifest file's name inside an app folder.
pub const MANIFEST_FILE: &str = "inf.yml";

/// The top-level fields [`Manifest`] knows; any other goes to [`Manifest::extra`].
const KNOWN_FIELDS: &[&str] = &[
    "namespace",
    "name",
    "description",
    "category",
    "kernel",
    "metadata",
    "images",
    "env",
    "resources",
    "secrets",
    "integrations",
    "default_function",
];

/// The contents of `inf.yml`. Every field is optional; [`Manifest::default`]
/// stands for an app without one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Manifest {
    #[serde(
        deserialize_with = "opt_scalar_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub namespace: Option<String>,
    #[serde(
        deserialize_with = "opt_scalar_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<String>,
    #[serde(
        deserialize_with = "opt_scalar_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub description: Option<String>,
    #[serde(
        deserialize_with = "opt_scalar_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub category: Option<String>,
    /// `python-3.10`, `python-3.11`, `python-3.12`, ...
    #[serde(
        deserialize_with = "opt_scalar_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub kernel: Option<String>,
    /// Free-form; kept as JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Free-form (a list of URLs or a map in real apps); kept as JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<Value>,
    /// Environment variables for the app process; scalar values are stringified.
    #[serde(
        deserialize_with = "env_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub env: BTreeMap<String, String>,
    pub resources: Resources,
    #[serde(
        deserialize_with = "requirement_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub secrets: Vec<Requirement>,
    #[serde(
        deserialize_with = "requirement_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub integrations: Vec<Requirement>,
    /// The function called when a request names none.
    #[serde(
        deserialize_with = "opt_scalar_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_function: Option<String>,
    /// Fields this version does not know, kept as they were (filled by
    /// [`Manifest::parse`]; written back flattened when serialized).
    #[serde(flatten, skip_deserializing)]
    pub extra: BTreeMap<String, Value>,
}

/// `resources:` hardware an app asks for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    #[serde(deserialize_with = "null_default")]
    pub gpu: Gpu,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ram: Option<Quantity>,
}

/// `resources.gpu`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Gpu {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<Quantity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vram: Option<Quantity>,
    /// `any`, `nvidia`, `amd`, `apple`, `none`.
    #[serde(
        rename = "type",
        deserialize_with = "opt_scalar_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub kind: Option<String>,
}

/// A secret or integration the app needs: `{key, description, optional}`, or a
/// bare key string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    pub key: String,
    #[serde(
        default,
        deserialize_with = "opt_scalar_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub optional: bool,
}

/// A YAML scalar where real manifests disagree on the type: `24`, `24.5`,
/// `"24GB"`, `"16 GiB"`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Quantity {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        use serde_norway::Value as Y;
        match Y::deserialize(d)? {
            Y::Bool(b) => Ok(Quantity::Bool(b)),
            Y::String(s) => Ok(Quantity::Text(s)),
            Y::Number(n) => match n.as_i64() {
                Some(i) => Ok(Quantity::Int(i)),
                None => Ok(Quantity::Float(n.as_f64().unwrap_or(f64::NAN))),
            },
            _ => Err(D::Error::custom(
                "expected a number or a size such as \"24GB\"",
            )),
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quantity::Int(n) => write!(f, "{n}"),
            Quantity::Float(x) => write!(f, "{x}"),
            Quantity::Bool(b) => write!(f, "{b}"),
            Quantity::Text(s) => f.write_str(s),
        }
    }
}

impl Quantity {
    /// The quantity as a plain number, if it is one (or a numeric string).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Quantity::Int(n) => Some(*n as f64),
            Quantity::Float(x) => Some(*x),
            Quantity::Bool(_) => None,
            Quantity::Text(s) => s.trim().parse().ok(),
        }
    }

    /// A memory size in gigabytes, read the way the platform's CLI reads it:
    /// a bare number below 1000 is GB, from 1000 to 10^9 is MB, larger is bytes;
    /// a string may carry a unit (`24GB`, `24 GiB`, `512MB`, `1TB`, `24G`).
    pub fn as_gigabytes(&self) -> Option<f64> {
        let from_number = |n: f64| {
            if n < 1000.0 {
                n
            } else if n < 1e9 {
                n / 1000.0
            } else {
                n / 1e9
            }
        };
        match self {
            Quantity::Int(_) | Quantity::Float(_) => self.as_f64().map(from_number),
            Quantity::Bool(_) => None,
            Quantity::Text(s) => {
                let s = s.trim();
                let split = s
                    .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                    .unwrap_or(s.len());
                let (num, unit) = s.split_at(split);
                let n: f64 = num.parse().ok()?;
                match unit.trim().to_ascii_lowercase().as_str() {
                    "" => Some(from_number(n)),
                    "b" => Some(n / 1e9),
                    "k" | "kb" | "kib" => Some(n / 1e6),
                    "m" | "mb" | "mib" => Some(n / 1000.0),
                    "g" | "gb" | "gib" => Some(n),
                    "t" | "tb" | "tib" => Some(n * 1000.0),
                    _ => None,
                }
            }
        }
    }
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Malformed YAML or a field of the wrong shape. `line`/`column` are 1-based,
    /// 0 when the parser could not tell.
    #[error("{}: {message}", location(.path, *.line, *.column))]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

impl Manifest {
    /// Reads and parses a manifest file.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Manifest::parse(&text, path)
    }

    /// Parses manifest text; `path` only names the source in errors. An empty
    /// (or comment-only) document is an empty manifest.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        let doc: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| parse_error(path, &e))?;
        if doc.is_null() {
            return Ok(Manifest::default());
        }
        if !doc.is_mapping() {
            return Err(ManifestError::Parse {
                path: path.to_path_buf(),
                line: 1,
                column: 1,
                message:
                    "expected a mapping of fields (name: ..., namespace: ...) at the top level"
                        .into(),
            });
        }
        // Deserialize from the text again (not from `doc`) so that field errors
        // carry a line and column; `extra` is not flattened on the way in for
        // the same reason (serde buffers flattened structs and loses positions).
        let mut manifest: Manifest =
            serde_norway::from_str(text).map_err(|e| parse_error(path, &e))?;
        for (k, v) in doc.as_mapping().expect("checked").iter() {
            let Some(key) = k
                .as_str()
                .map(str::to_string)
                .or_else(|| scalar_to_string(k.clone()).ok().flatten())
            else {
                continue;
            };
            if !KNOWN_FIELDS.contains(&key.as_str()) {
                let value = serde_json::to_value(v).unwrap_or(Value::Null);
                manifest.extra.insert(key, value);
            }
        }
        Ok(manifest)
    }

    /// `namespace/name` when both are set.
    pub fn qualified_name(&self) -> Option<String> {
        match (self.namespace.as_deref(), self.name.as_deref()) {
            (Some(ns), Some(name)) if !ns.is_empty() && !name.is_empty() => {
                Some(format!("{ns}/{name}"))
            }
            _ => None,
        }
    }

    /// Secrets that are not optional.
    pub fn required_secrets(&self) -> impl Iterator<Item = &Requirement> {
        self.secrets.iter().filter(|s| !s.optional)
    }
}

fn parse_error(path: &Path, e: &serde_norway::Error) -> ManifestError {
    let (line, column, message) = error_at(e);
    ManifestError::Parse {
        path: path.to_path_buf(),
        line,
        column,
        message,
    }
}

fn scalar_to_string(v: serde_norway::Value) -> Result<Option<String>, String> {
    use serde_norway::Value as Y;
    match v {
        Y::Null => Ok(None),
        Y::Bool(b) => Ok(Some(b.to_string())),
        Y::Number(n) => Ok(Some(n.to_string())),
        Y::String(s) => Ok(Some(s)),
        Y::Tagged(t) => scalar_to_string(t.value),
        Y::Sequence(_) => Err("expected a single value, found a list".into()),
        Y::Mapping(_) => Err("expected a single value, found a mapping".into()),
    }
}

fn opt_scalar_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    scalar_to_string(serde_norway::Value::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn env_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    /// One env value: any scalar, stringified; errors point at the value.
    struct EnvValue(String);
    impl<'de> Deserialize<'de> for EnvValue {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            Ok(EnvValue(opt_scalar_string(d)?.unwrap_or_default()))
        }
    }
    let map = Option::<BTreeMap<String, EnvValue>>::deserialize(d)?.unwrap_or_default();
    Ok(map.into_iter().map(|(k, v)| (k, v.0)).collect())
}

fn requirement_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Requirement>, D::Error> {
    /// A bare key, or `{key, description, optional}`.
    struct Item(Requirement);
    impl<'de> Deserialize<'de> for Item {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            use serde::de::Error;
            use serde_norway::Value as Y;
            match Y::deserialize(d)? {
                Y::String(key) => Ok(Item(Requirement {
                    key,
                    description: None,
                    optional: false,
                })),
                v @ Y::Mapping(_) => {
                    if v.get("key").and_then(Y::as_str).is_none() {
                        return Err(D::Error::custom(
                            "each entry needs a `key` (e.g. `- key: HF_TOKEN`)",
                        ));
                    }
                    serde_norway::from_value(v)
                        .map(Item)
                        .map_err(D::Error::custom)
                }
                _ => Err(D::Error::custom(
                    "expected a key or a mapping {key, description, optional}",
                )),
            }
        }
    }
    let items = Option::<Vec<Item>>::deserialize(d)?.unwrap_or_default();
    Ok(items.into_iter().map(|i| i.0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(text, Path::new("/apps/x/inf.yml"))
    }

    const FULL: &str = r#"
namespace: acme
name: upscaler
description: |
  Upscales images.
category: image
kernel: python-3.11
default_function: upscale
metadata:
  tags: [image, sr]
images:
  card: https://example.com/card.png
env:
  HF_HUB_ENABLE_HF_TRANSFER: 1
  MODEL: realesrgan
  DEBUG: true
  EMPTY:
resources:
  gpu:
    count: 1
    vram: 24GB
    type: nvidia
  ram: 32
secrets:
  - key: HF_TOKEN
    description: HuggingFace token
    optional: false
  - OTHER_KEY
integrations:
  - key: google.sheets
    description: Access to Google Sheets
    optional: true
future_field: {a: 1}
"#;

    #[test]
    fn parses_every_known_field() {
        let m = parse(FULL).unwrap();
        assert_eq!(m.qualified_name().as_deref(), Some("acme/upscaler"));
        assert_eq!(m.description.as_deref(), Some("Upscales images.\n"));
        assert_eq!(m.category.as_deref(), Some("image"));
        assert_eq!(m.kernel.as_deref(), Some("python-3.11"));
        assert_eq!(m.default_function.as_deref(), Some("upscale"));
        assert_eq!(
            m.metadata,
            Some(serde_json::json!({"tags": ["image", "sr"]}))
        );
        assert_eq!(
            m.images,
            Some(serde_json::json!({"card": "https://example.com/card.png"}))
        );
        assert_eq!(m.env["HF_HUB_ENABLE_HF_TRANSFER"], "1");
        assert_eq!(m.env["DEBUG"], "true");
        assert_eq!(m.env["EMPTY"], "");
        assert_eq!(m.resources.gpu.count, Some(Quantity::Int(1)));
        assert_eq!(m.resources.gpu.vram, Some(Quantity::Text("24GB".into())));
        assert_eq!(m.resources.gpu.kind.as_deref(), Some("nvidia"));
        assert_eq!(
            m.resources.ram.as_ref().and_then(Quantity::as_gigabytes),
            Some(32.0)
        );
        assert_eq!(m.secrets.len(), 2);
        assert_eq!(
            m.secrets[1],
            Requirement {
                key: "OTHER_KEY".into(),
                description: None,
                optional: false
            }
        );
        assert_eq!(m.required_secrets().count(), 2);
        assert!(m.integrations[0].optional);
        assert_eq!(m.extra["future_field"], serde_json::json!({"a": 1}));
    }

    #[test]
    fn empty_and_minimal_documents() {
        assert_eq!(parse("").unwrap(), Manifest::default());
        assert_eq!(parse("# only a comment\n").unwrap(), Manifest::default());
        let m = parse("name: solo\nresources:\nsecrets:\nenv:\n").unwrap();
        assert_eq!(m.name.as_deref(), Some("solo"));
        assert_eq!(m.qualified_name(), None);
        assert!(m.secrets.is_empty() && m.env.is_empty());
    }

    #[test]
    fn numbers_where_strings_are_expected() {
        let m = parse("name: 2048\nnamespace: acme\nresources: {gpu: {vram: 80, count: \"2\"}}\n")
            .unwrap();
        assert_eq!(m.qualified_name().as_deref(), Some("acme/2048"));
        assert_eq!(
            m.resources.gpu.vram.as_ref().unwrap().as_gigabytes(),
            Some(80.0)
        );
        assert_eq!(m.resources.gpu.count.as_ref().unwrap().as_f64(), Some(2.0));
    }

    #[test]
    fn quantities_in_gigabytes() {
        let gb = |q: Quantity| q.as_gigabytes();
        assert_eq!(gb(Quantity::Int(24)), Some(24.0));
        assert_eq!(gb(Quantity::Int(24000)), Some(24.0));
        assert_eq!(gb(Quantity::Int(24_000_000_000)), Some(24.0));
        assert_eq!(gb(Quantity::Float(0.5)), Some(0.5));
        assert_eq!(gb(Quantity::Text("24GB".into())), Some(24.0));
        assert_eq!(gb(Quantity::Text("16 GiB".into())), Some(16.0));
        assert_eq!(gb(Quantity::Text("512MB".into())), Some(0.512));
        assert_eq!(gb(Quantity::Text("1TB".into())), Some(1000.0));
        assert_eq!(gb(Quantity::Text("lots".into())), None);
        assert_eq!(Quantity::Text("24GB".into()).to_string(), "24GB");
    }

    #[test]
    fn bad_yaml_names_file_line_and_column() {
        let err = parse("name: x\nresources:\n  gpu: [1, 2\n").unwrap_err();
        let ManifestError::Parse { line, column, .. } = &err else {
            panic!("{err}")
        };
        assert!(*line >= 3, "{err}");
        assert!(*column >= 1);
        let text = err.to_string();
        assert!(text.starts_with("/apps/x/inf.yml:4:1: "), "{text}");
        assert!(
            text.contains("did not find expected ',' or ']', while parsing a flow sequence"),
            "{text}"
        );
    }

    #[test]
    fn wrong_shapes_are_located_errors() {
        let err = parse("name: x\nenv:\n  A: [1, 2]\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("env: expected a single value, found a list"),
            "{err}"
        );
        assert!(
            matches!(err, ManifestError::Parse { line: 3, .. }),
            "{err:?}"
        );
        let err = parse("name: x\nsecrets:\n  - description: no key\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("secrets: each entry needs a `key`"),
            "{err}"
        );
        assert!(
            matches!(err, ManifestError::Parse { line: 3, .. }),
            "{err:?}"
        );
        let err = parse("name: x\nresources:\n  gpu:\n    vram: [24]\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("resources.gpu: expected a number or a size"),
            "{err}"
        );
        assert!(
            matches!(err, ManifestError::Parse { line: 4, .. }),
            "{err:?}"
        );
        let err = parse("name: x\nsecrets: 5\n").unwrap_err();
        assert!(
            matches!(err, ManifestError::Parse { line: 2, .. }),
            "{err:?}"
        );
        let err = parse("- just\n- a list\n").unwrap_err();
        assert!(err.to_string().contains("mapping"), "{err}");
    }

    #[test]
    fn round_trips_through_json() {
        let m = parse(FULL).unwrap();
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["future_field"], serde_json::json!({"a": 1}));
        assert_eq!(json["resources"]["gpu"]["type"], "nvidia");
        let back: Manifest = serde_json::from_value(json).unwrap();
        assert_eq!(back.resources, m.resources);
        assert_eq!(back.secrets, m.secrets);
        assert!(back.extra.is_empty(), "extra is only filled by parse()");
    }
}
