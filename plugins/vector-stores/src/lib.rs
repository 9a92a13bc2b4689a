#![doc = include_str!("../README.md")]

pub mod batches;
pub mod chunking;
pub mod extract;
pub mod files;
pub mod ingest;
pub mod search;
pub mod stores;

use cinder_sdk::host::AgentHost;
use cinder_sdk::{Error, ErrorDetail, Job, Outcome, Request, Route, ServeAgent};

/// The first-party vector stores plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct FirstParty;

impl ServeAgent for FirstParty {
    fn serve(&self, route: &Route, request: Request, host: &dyn AgentHost) -> Result<(), Error> {
        let id = || route.param("id").unwrap_or_default();
        let file = || route.param("file_id").unwrap_or_default();
        let batch = || route.param("batch_id").unwrap_or_default();
        match route.id.as_str() {
            "vector_stores.create" => stores::create(&request, host),
            "vector_stores.list" => stores::list(&request, host),
            "vector_stores.retrieve" => stores::retrieve(id(), host),
            "vector_stores.modify" => stores::modify(id(), &request, host),
            "vector_stores.delete" => stores::delete(id(), host),
            "vector_stores.search" => search::route(id(), &request, host),
            "vector_stores.files.create" => files::create(id(), &request, host),
            "vector_stores.files.list" => files::list(id(), None, &request, host),
            "vector_stores.files.retrieve" => files::retrieve(id(), file(), host),
            "vector_stores.files.update" => files::update(id(), file(), &request, host),
            "vector_stores.files.delete" => files::delete(id(), file(), host),
            "vector_stores.files.content" => files::content(id(), file(), host),
            "vector_stores.file_batches.create" => batches::create(id(), &request, host),
            "vector_stores.file_batches.retrieve" => batches::retrieve(id(), batch(), host),
            "vector_stores.file_batches.cancel" => batches::cancel(id(), batch(), host),
            "vector_stores.file_batches.files" => {
                batches::list_files(id(), batch(), &request, host)
            }
            other => Err(Error::NotFound(ErrorDetail {
                message: format!("the vector stores plugin serves no route `{other}`"),
                param: None,
                code: Some("unknown_url".into()),
            })),
        }
    }

    fn step(&self, job: Job, host: &dyn AgentHost) -> Result<Outcome, Error> {
        match job.kind.as_str() {
            files::KIND => ingest::step(job, host),
            other => Err(Error::Internal(format!(
                "the vector stores plugin runs no `{other}` jobs"
            ))),
        }
    }
}

cinder_sdk::export_agent_plugin!(FirstParty);

/// Seconds since the Unix epoch.
fn now() -> i64 {
    i64::try_from(cinder_sdk::unix_time()).unwrap_or(0)
}

/// A 400 naming `param`.
fn bad(message: impl Into<String>, param: &str) -> Error {
    cinder_sdk::openai::params::Invalid::new(message, param).into()
}
