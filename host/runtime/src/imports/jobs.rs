//! `cinder:plugin/jobs` and `cinder:plugin/dispatch` (WIT 0.1.8): queueing background work
//! of the kinds a plugin's manifest declares, and, inside a job step, requests to other
//! plugins' routes made as the job's owner at background priority.

use std::sync::Arc;

use cinder_store::{NewJob, StoreError};

use crate::bindings::cinder::plugin::types;
use crate::bindings::job_world::cinder::plugin::{dispatch, jobs};
use crate::call::{Output, PluginRequest};
use crate::failure::CallError;
use crate::imports::invalid_argument;
use crate::plugin::RouteMatch;
use crate::state::HostState;

/// Requests one `dispatch.run` may carry.
const MAX_CALLS: usize = 256;

impl jobs::Host for HostState {
    async fn enqueue(
        &mut self,
        kind: String,
        id: String,
        progress: String,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        self.queue_job(kind, id, progress, None).await
    }

    async fn enqueue_at(
        &mut self,
        kind: String,
        id: String,
        progress: String,
        not_before: i64,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        self.queue_job(kind, id, progress, Some(not_before)).await
    }

    async fn cancel(&mut self, id: String) -> wasmtime::Result<Result<bool, types::Error>> {
        let prefix = format!("{}/", self.plugin_id);
        self.with_store(None, async |store, owner| {
            let internal = |e: StoreError| types::Error::Internal(format!("jobs: {e}"));
            // Another owner's job, or another plugin's, is as good as absent.
            match store.job(&id).await.map_err(internal)? {
                Some(job) if job.owner == owner && job.kind.starts_with(&prefix) => store
                    .cancel_job(&id, cinder_store::now())
                    .await
                    .map_err(internal),
                _ => Ok(false),
            }
        })
        .await
    }
}

/// A failed call in WIT's terms: the serving plugin's own error as it gave it, the host's
/// refusals as the case that says whether retrying may help.
fn wit_error(e: CallError) -> types::Error {
    match e {
        CallError::Plugin(e) => e.into(),
        e @ CallError::QueueFull { .. } => types::Error::RateLimited(e.to_string()),
        e @ CallError::Body(_) => types::Error::InvalidRequest(types::ErrorDetail {
            message: e.to_string(),
            param: None,
            code: None,
        }),
        e => types::Error::Internal(e.to_string()),
    }
}

fn refused(message: String) -> types::Error {
    types::Error::InvalidRequest(types::ErrorDetail {
        message,
        param: Some("path".into()),
        code: Some("unknown_url".into()),
    })
}

impl dispatch::Host for HostState {
    async fn run(
        &mut self,
        calls: Vec<dispatch::Call>,
    ) -> wasmtime::Result<Vec<Result<dispatch::Answer, types::Error>>> {
        let Some(runtime) = self.jobs.step.as_ref().and_then(|s| s.runtime.upgrade()) else {
            let e = types::Error::Internal("dispatch: only a job step may dispatch".into());
            return Ok(calls.iter().map(|_| Err(e.clone())).collect());
        };
        if calls.len() > MAX_CALLS {
            let e = invalid_argument("calls", format!("at most {MAX_CALLS} calls at once"), None);
            return Ok(calls.iter().map(|_| Err(e.clone())).collect());
        }
        let owner = self.owner.to_string();
        let caller = self.plugin_id.clone();
        let request_id = self.request_id.clone();
        let answers = futures::future::join_all(
            calls
                .into_iter()
                .map(|c| one(&runtime, &caller, &owner, &request_id, c)),
        )
        .await;
        self.touch();
        Ok(answers)
    }
}

/// One dispatched request, through the plugin that serves its route, whole.
async fn one(
    runtime: &Arc<crate::Runtime>,
    caller: &str,
    owner: &str,
    request_id: &str,
    call: dispatch::Call,
) -> Result<dispatch::Answer, types::Error> {
    let method = call.method.to_ascii_uppercase();
    let bare = call.path.split('?').next().unwrap_or_default();
    let path = match bare.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    };
    let (plugin, route) = match runtime.route(&method, path) {
        RouteMatch::Found(p, r) => (p, r),
        RouteMatch::MethodNotAllowed => {
            return Err(refused(format!("{method} is not allowed on {path}")));
        }
        RouteMatch::NotFound => {
            return Err(refused(format!("Unknown request URL: {method} {path}")));
        }
    };
    // A job may not call its own family (a batch of batches) or a route that reads a form.
    if plugin.info.id == caller || route.body.takes_forms() {
        return Err(refused(format!(
            "{method} {path} cannot be dispatched by a job"
        )));
    }
    let Ok(_permit) = runtime.dispatch_slots.clone().acquire_owned().await else {
        return Err(types::Error::Unavailable(
            "the server is shutting down".into(),
        ));
    };
    let mut outputs = runtime.call(
        plugin,
        PluginRequest {
            method,
            path: call.path,
            body: call.body,
            request_id: request_id.to_owned(),
            route: Some(route),
            owner: owner.to_owned(),
            multipart: None,
            background: true,
            // A dispatched call's links would name no address a client knows.
            public_url: None,
        },
    );
    loop {
        match outputs.recv().await {
            Some(Output::Uses(_)) => continue,
            Some(Output::Respond { status, body }) => {
                return Ok(dispatch::Answer { status, body });
            }
            Some(Output::Failed(e)) => return Err(wit_error(e)),
            Some(Output::Event(_) | Output::NamedEvent(..)) => {
                return Err(invalid_argument(
                    "body",
                    "a dispatched request cannot stream (`stream` must be false)",
                    None,
                ));
            }
            Some(Output::File { .. }) => {
                return Err(invalid_argument(
                    "path",
                    "a dispatched request cannot answer with a file",
                    None,
                ));
            }
            None => return Err(types::Error::Internal("the route answered nothing".into())),
        }
    }
}

impl HostState {
    /// `enqueue` and `enqueue-at`: a job of one of the plugin's kinds, for the caller's owner.
    async fn queue_job(
        &mut self,
        kind: String,
        id: String,
        progress: String,
        not_before: Option<i64>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        if !self.jobs.kinds.contains(&kind) {
            return Ok(Err(types::Error::Internal(format!(
                "jobs: the plugin `{}` did not declare the job kind `{kind}` (jobs = [..., \"{kind}\"] in its plugin.toml)",
                self.plugin_id
            ))));
        }
        if id.is_empty() || id.len() > 128 {
            return Ok(Err(invalid_argument(
                "id",
                "a job id is 1 to 128 characters",
                None,
            )));
        }
        let kind = format!("{}/{kind}", self.plugin_id);
        let wake = self.jobs.wake.of(&kind);
        self.with_store(None, async |store, owner| {
            let new = NewJob {
                id: id.clone(),
                kind,
                owner: owner.to_owned(),
                progress,
                now: cinder_store::now(),
                not_before,
            };
            match store.enqueue(new).await {
                Ok(_) => {
                    // A job due later is found by the workers' poll when its time comes.
                    if not_before.is_none() {
                        wake.notify_one();
                    }
                    Ok(())
                }
                Err(StoreError::Duplicate(_)) => Err(invalid_argument(
                    "id",
                    format!("a job `{id}` exists already"),
                    None,
                )),
                Err(StoreError::NulCharacter(field)) => Err(invalid_argument(
                    field,
                    format!("`{field}` contains a NUL character, which cannot be stored"),
                    None,
                )),
                Err(e) => Err(types::Error::Internal(format!("jobs: {e}"))),
            }
        })
        .await
    }
}
