//! Hosted apps: the listing entry and the detail with the functions'
//! schemas. The engine's `AppState` is serialised as is.

use infsh_engine::{AppDetail, AppState, AppSummary};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// A hosted app, for `GET /apps`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AppDto {
    /// `namespace/name`.
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub description: Option<String>,
    /// inf.yml's `category` (e.g. `image`).
    pub category: Option<String>,
    /// inf.yml's `images` as written (e.g. `{"card": URL}`).
    pub images: Option<Value>,
    pub default_function: Option<String>,
    /// Function names; `null` until the app's first worker reported them.
    pub functions: Option<Vec<String>>,
    #[schema(schema_with = app_state_schema)]
    pub state: AppState,
    /// Apps of remote engines only: the content hash (of the app folder)
    /// their runs go to, the earliest live registration's; absent while
    /// every engine hosting it is offline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Remote engines hosting the app (absent when none does).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub engines: Vec<AppEngineDto>,
}

/// A remote engine hosting an app, in `GET /apps`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AppEngineDto {
    pub engine: String,
    /// The content hash this engine registered.
    pub hash: String,
    /// Another hash is served: this engine takes none of the app's tasks.
    pub conflict: bool,
    /// `online`, `draining` or `offline`.
    #[schema(value_type = String)]
    pub state: infsh_store::fleet::EngineState,
}

/// A hosted app with its functions' schemas, for `GET /apps/{namespace}/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AppDetailDto {
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub description: Option<String>,
    /// inf.yml's `category` (e.g. `image`).
    pub category: Option<String>,
    /// inf.yml's `images` as written (e.g. `{"card": URL}`).
    pub images: Option<Value>,
    pub default_function: Option<String>,
    #[schema(schema_with = app_state_schema)]
    pub state: AppState,
    /// `functions_schema.json`: `{fn: {description, input_schema, output_schema}}`.
    pub functions: Value,
    /// JSON Schema of the app's setup config.
    pub setup_schema: Value,
}

/// The engine's [`AppState`] is serialised as is; the document says
/// which strings it takes (derived from [`AppState::ALL`], so the two
/// cannot drift).
pub(super) fn app_state_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(AppState::ALL.iter().map(|s| s.as_str())))
        .description(Some(
            "Worker state: `idle` (workers start at the first call), `starting`, `ready` or `unhealthy`.",
        ))
        .build()
}

impl AppDto {
    pub fn from_summary(s: &AppSummary) -> AppDto {
        AppDto {
            id: s.id.clone(),
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            description: s.description.clone(),
            category: s.category.clone(),
            images: s.images.clone(),
            default_function: s.default_function.clone(),
            functions: s.functions.clone(),
            state: s.state,
            hash: None,
            engines: Vec::new(),
        }
    }

    /// An app only remote engines host.
    pub fn from_remote(r: &infsh_engine::HostedRemotely) -> AppDto {
        let mut dto = AppDto::from_summary(&r.summary);
        dto.add_engines(r);
        dto
    }

    /// Names the remote engines hosting this app, with the served hash.
    pub fn add_engines(&mut self, r: &infsh_engine::HostedRemotely) {
        self.hash = r.hash.clone();
        self.engines = r
            .engines
            .iter()
            .map(|h| AppEngineDto {
                engine: h.engine.clone(),
                hash: h.hash.clone(),
                conflict: h.conflict,
                state: h.state,
            })
            .collect();
    }
}

impl AppDetailDto {
    pub fn from_detail(d: &AppDetail) -> AppDetailDto {
        let s = &d.summary;
        AppDetailDto {
            id: s.id.clone(),
            namespace: s.namespace.clone(),
            name: s.name.clone(),
            description: s.description.clone(),
            category: s.category.clone(),
            images: s.images.clone(),
            default_function: s.default_function.clone(),
            state: s.state,
            functions: d.functions.clone(),
            setup_schema: d.setup_schema.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn app_state_is_the_engine_enum_by_name() {
        let summary = AppSummary {
            id: "ns/a".into(),
            namespace: "ns".into(),
            name: "a".into(),
            description: None,
            category: None,
            images: None,
            default_function: None,
            functions: None,
            state: AppState::Unhealthy,
        };
        let v = serde_json::to_value(AppDto::from_summary(&summary)).unwrap();
        assert_eq!(v["state"], "unhealthy");
        // The document lists exactly the enum's names for every DTO.
        let doc = crate::routes::fixed_document();
        for dto in ["AppDto", "AppDetailDto", "AppReadinessDto"] {
            assert_eq!(
                doc["components"]["schemas"][dto]["properties"]["state"]["enum"],
                json!(["idle", "starting", "ready", "unhealthy"]),
                "{dto}"
            );
        }
    }
}
