#![doc = include_str!("../README.md")]

pub mod assistants;
pub mod threads;

use cinder_sdk::host::AgentHost;
use cinder_sdk::{Error, ErrorDetail, Job, Outcome, Request, Route, ServeAgent};

/// The first-party assistants plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct FirstParty;

impl ServeAgent for FirstParty {
    fn serve(&self, route: &Route, request: Request, host: &dyn AgentHost) -> Result<(), Error> {
        let id = || route.param("id").unwrap_or_default();
        let message = || route.param("message_id").unwrap_or_default();
        match route.id.as_str() {
            "assistants.create" => assistants::create(&request, host),
            "assistants.list" => assistants::list(&request, host),
            "assistants.retrieve" => assistants::retrieve(id(), host),
            "assistants.modify" => assistants::modify(id(), &request, host),
            "assistants.delete" => assistants::delete(id(), host),
            "threads.create" => threads::create(&request, host),
            "threads.retrieve" => threads::retrieve(id(), host),
            "threads.modify" => threads::modify(id(), &request, host),
            "threads.delete" => threads::delete(id(), host),
            "threads.messages.create" => threads::create_message(id(), &request, host),
            "threads.messages.list" => threads::list_messages(id(), &request, host),
            "threads.messages.retrieve" => threads::retrieve_message(id(), message(), host),
            "threads.messages.modify" => threads::modify_message(id(), message(), &request, host),
            "threads.messages.delete" => threads::delete_message(id(), message(), host),
            r if r.starts_with("threads.") => Err(not_built("runs")),
            r if r.starts_with("vector_stores.") => Err(not_built("vector stores")),
            other => Err(Error::NotFound(ErrorDetail {
                message: format!("the assistants plugin serves no route `{other}`"),
                param: None,
                code: Some("unknown_url".into()),
            })),
        }
    }

    fn step(&self, job: Job, _host: &dyn AgentHost) -> Result<Outcome, Error> {
        Err(Error::Internal(format!(
            "the assistants plugin runs no `{}` jobs yet",
            job.kind
        )))
    }
}

cinder_sdk::export_agent_plugin!(FirstParty);

/// The honest answer of a route whose family is not built yet: 503, naming it.
fn not_built(what: &str) -> Error {
    Error::Unavailable(format!(
        "{what} are not built in Cinder yet (assistants, threads and messages are)"
    ))
}
