#![doc = include_str!("../README.md")]

pub mod assistants;
mod attach;
mod file_search;
mod run_job;
mod run_output;
mod run_settings;
mod run_steps;
pub mod runs;
pub mod stream;
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
        let run = || route.param("run_id").unwrap_or_default();
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
            "threads.runs.create" => runs::create(id(), &request, host),
            "threads.create_and_run" => runs::create_thread_and_run(&request, host),
            "threads.runs.list" => runs::list(id(), &request, host),
            "threads.runs.retrieve" => runs::retrieve(id(), run(), host),
            "threads.runs.modify" => runs::modify(id(), run(), &request, host),
            "threads.runs.cancel" => runs::cancel(id(), run(), host),
            "threads.runs.submit_tool_outputs" => {
                run_steps::submit_tool_outputs(id(), run(), &request, host)
            }
            "threads.runs.steps.list" => run_steps::list_steps(id(), run(), &request, host),
            "threads.runs.steps.retrieve" => run_steps::retrieve_step(
                id(),
                run(),
                route.param("step_id").unwrap_or_default(),
                &request,
                host,
            ),
            other => Err(Error::NotFound(ErrorDetail {
                message: format!("the assistants plugin serves no route `{other}`"),
                param: None,
                code: Some("unknown_url".into()),
            })),
        }
    }

    fn step(&self, job: Job, host: &dyn AgentHost) -> Result<Outcome, Error> {
        match job.kind.as_str() {
            runs::KIND => run_job::step(job, host),
            attach::KIND => attach::step(job, host),
            other => Err(Error::Internal(format!(
                "the assistants plugin runs no `{other}` jobs"
            ))),
        }
    }
}

cinder_sdk::export_agent_plugin!(FirstParty);

/// A 400 naming `param`.
fn bad(message: impl Into<String>, param: &str) -> Error {
    cinder_sdk::openai::params::Invalid::new(message, param).into()
}
