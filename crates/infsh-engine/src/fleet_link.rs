//! The [`Engine`] methods the HTTP layer's `/engine/...` routes and
//! `GET /engines` call on an API node that serves remote engines
//! (`fleet_hub.rs` does the work). Kept out of engine.rs, which only holds
//! the hub.

use std::sync::Arc;

use infsh_store::fleet::{ClaimRequest, EngineSession, FleetStore, LocalWakeup, Report, Wakeup};

use crate::api::EngineError;
use crate::engine::Engine;
use crate::fleet_api::{
    ClaimAnswer, FleetLinkError, FleetOptions, HostedRemotely, RemoteEngineView, RemoteRegistration,
};
use crate::fleet_hub::FleetHub;

impl Engine {
    /// Takes remote engines from now on: runs of apps only they host are
    /// queued for them, and expired leases are swept. Needs a fleet store:
    /// the engine's own SQLite store, or the one given to
    /// [`Engine::start_on_fleet`] (PostgreSQL, shared by API nodes). Calling
    /// it again changes nothing.
    pub async fn enable_fleet(&self, options: FleetOptions) -> Result<(), EngineError> {
        if self.inner.fleet.get().is_some() {
            return Ok(());
        }
        let (store, wake): (Arc<dyn FleetStore>, Arc<dyn Wakeup>) =
            match (&self.inner.backing, &self.inner.sqlite) {
                (Some(backing), _) => (backing.store.clone(), backing.wake.clone()),
                (None, Some(sqlite)) => {
                    (Arc::new(sqlite.clone()), Arc::new(LocalWakeup::default()))
                }
                (None, None) => {
                    return Err(EngineError::UnknownEngine(
                        "remote engines need a fleet store (start the engine with one)".into(),
                    ))
                }
            };
        let hub = FleetHub::start(self.shared().clone(), store, wake, options).await?;
        let _ = self.inner.fleet.set(hub);
        tracing::info!(
            lease_s = options.lease.as_secs_f64(),
            max_attempts = options.max_attempts,
            "taking remote engines"
        );
        Ok(())
    }

    fn hub(&self) -> Result<&Arc<FleetHub>, FleetLinkError> {
        self.inner.fleet.get().ok_or(FleetLinkError::Disabled)
    }

    /// Whether [`Engine::enable_fleet`] was called.
    pub fn fleet_enabled(&self) -> bool {
        self.inner.fleet.get().is_some()
    }

    pub async fn register_remote(
        &self,
        registration: RemoteRegistration,
    ) -> Result<infsh_store::fleet::EngineRecord, FleetLinkError> {
        self.hub()?.register(registration).await
    }

    /// A claim: `holding` the tasks the engine runs, `sessions` what it
    /// says of the sessions it holds (docs/sessions.md, "In a fleet").
    pub async fn claim_remote(
        &self,
        request: ClaimRequest,
        holding: &[String],
        sessions: &[EngineSession],
    ) -> Result<ClaimAnswer, FleetLinkError> {
        self.hub()?.claim(request, holding, sessions).await
    }

    pub async fn heartbeat_remote(
        &self,
        engine: &str,
        holding: &[String],
    ) -> Result<ClaimAnswer, FleetLinkError> {
        self.hub()?.heartbeat(engine, holding).await
    }

    pub async fn report_remote(
        &self,
        engine: &str,
        task_id: &str,
        report: Report,
    ) -> Result<(), FleetLinkError> {
        self.hub()?.report(engine, task_id, report).await
    }

    /// The task's runs on remote engines (or, taken over from a lost API
    /// node, on nodes' own workers), first first; empty for a task that
    /// never had one.
    pub async fn task_attempts(
        &self,
        id: &str,
    ) -> Result<Vec<infsh_store::fleet::AttemptRecord>, EngineError> {
        match self.inner.fleet.get() {
            Some(hub) => hub.attempts(id).await,
            None => Ok(self.shared().store.task_attempts(id).await?),
        }
    }

    /// Apps remote engines host, and the current versions the store
    /// knows when versions go to engines (empty when the fleet is off).
    pub async fn remote_apps(&self) -> Result<Vec<HostedRemotely>, EngineError> {
        match self.inner.fleet.get() {
            Some(hub) => {
                let mut apps = hub.apps().await?;
                for stored in hub.stored_apps().await? {
                    if !apps.iter().any(|a| a.summary.id == stored.summary.id) {
                        apps.push(stored);
                    }
                }
                Ok(apps)
            }
            None => Ok(Vec::new()),
        }
    }

    /// Remote engines (empty when the fleet is off).
    pub async fn remote_engines(&self) -> Result<Vec<RemoteEngineView>, EngineError> {
        match self.inner.fleet.get() {
            Some(hub) => hub.engines().await,
            None => Ok(Vec::new()),
        }
    }

    /// Drains (or undrains) a remote engine by name: it claims nothing new.
    pub async fn set_remote_draining(&self, name: &str, draining: bool) -> Result<(), EngineError> {
        match self.inner.fleet.get() {
            Some(hub) => hub.set_draining(name, draining).await,
            None => Err(EngineError::UnknownEngine(name.to_string())),
        }
    }
}
