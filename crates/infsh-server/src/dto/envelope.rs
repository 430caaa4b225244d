//! The success envelope `{"data": <dto>, "messages": []}` of every 2xx JSON
//! body (stream lines are not wrapped), and its concrete forms, which exist
//! only so the OpenAPI document can name them.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::apikeys::ApiKeyDto;
use super::apps::{AppDetailDto, AppDto};
use super::engines::{AppDrainDto, EngineDto, WorkerDto};
use super::files::FileDto;
use super::ops::{HealthDto, ReadyDto};
use super::sessions::AppSessionDto;
use super::tasks::{TaskDto, TaskPageDto};
use super::versions::AppVersionDto;

/// The success envelope of every JSON response but `/stream` lines.
#[derive(Debug, Clone, Serialize)]
pub struct Envelope<T> {
    pub data: T,
    /// Always empty; the client passes it to its optional `on_message` hook.
    pub messages: Vec<Value>,
}

impl<T> Envelope<T> {
    pub fn new(data: T) -> Self {
        Envelope {
            data,
            messages: Vec::new(),
        }
    }
}

/// Concrete envelope types for the OpenAPI document (utoipa names them).
macro_rules! envelope_doc {
    ($name:ident, $inner:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Serialize, ToSchema)]
        #[allow(dead_code)]
        pub struct $name {
            pub data: $inner,
            /// Always empty.
            pub messages: Vec<Value>,
        }
    };
}

envelope_doc!(
    ApiKeyEnvelope,
    ApiKeyDto,
    "`{\"data\": ApiKey, \"messages\": []}`"
);
envelope_doc!(
    ApiKeyListEnvelope,
    Vec<ApiKeyDto>,
    "`{\"data\": [ApiKey], \"messages\": []}`"
);
envelope_doc!(
    TaskEnvelope,
    TaskDto,
    "`{\"data\": Task, \"messages\": []}`"
);
envelope_doc!(
    TaskPageEnvelope,
    TaskPageDto,
    "`{\"data\": TaskPage, \"messages\": []}`"
);
envelope_doc!(
    FileListEnvelope,
    Vec<FileDto>,
    "`{\"data\": [File], \"messages\": []}`"
);
envelope_doc!(
    FileEnvelope,
    FileDto,
    "`{\"data\": File, \"messages\": []}`"
);
envelope_doc!(
    AppListEnvelope,
    Vec<AppDto>,
    "`{\"data\": [App], \"messages\": []}`"
);
envelope_doc!(
    AppDetailEnvelope,
    AppDetailDto,
    "`{\"data\": AppDetail, \"messages\": []}`"
);
envelope_doc!(
    ReadyEnvelope,
    ReadyDto,
    "`{\"data\": Ready, \"messages\": []}`"
);
envelope_doc!(
    HealthEnvelope,
    HealthDto,
    "`{\"data\": Health, \"messages\": []}`"
);
envelope_doc!(
    EngineListEnvelope,
    Vec<EngineDto>,
    "`{\"data\": [Engine], \"messages\": []}`"
);
envelope_doc!(
    EngineEnvelope,
    EngineDto,
    "`{\"data\": Engine, \"messages\": []}`"
);
envelope_doc!(
    WorkerListEnvelope,
    Vec<WorkerDto>,
    "`{\"data\": [Worker], \"messages\": []}`"
);
envelope_doc!(
    AppDrainEnvelope,
    AppDrainDto,
    "`{\"data\": AppDrain, \"messages\": []}`"
);
envelope_doc!(
    SessionEnvelope,
    AppSessionDto,
    "`{\"data\": AppSession, \"messages\": []}`"
);
envelope_doc!(
    SessionListEnvelope,
    Vec<AppSessionDto>,
    "`{\"data\": [AppSession], \"messages\": []}`"
);
envelope_doc!(
    VersionEnvelope,
    AppVersionDto,
    "`{\"data\": AppVersion, \"messages\": []}`"
);
envelope_doc!(
    VersionListEnvelope,
    Vec<AppVersionDto>,
    "`{\"data\": [AppVersion], \"messages\": []}`"
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelope_shape() {
        let v = serde_json::to_value(Envelope::new(json!({"id": "x"}))).unwrap();
        assert_eq!(v, json!({"data": {"id": "x"}, "messages": []}));
    }
}
