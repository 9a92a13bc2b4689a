#![doc = include_str!("../README.md")]

pub mod expiry;
pub mod files;
mod form;
pub mod jsonl;
mod listing;
pub mod uploads;

use cinder_sdk::host::JobHost;
use cinder_sdk::{Error, ErrorDetail, Job, Outcome, Request, Route, ServeJobs};

/// The first-party files plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct FirstParty;

impl ServeJobs for FirstParty {
    fn serve(&self, route: &Route, request: Request, host: &dyn JobHost) -> Result<(), Error> {
        let id = || route.param("id").unwrap_or_default();
        match route.id.as_str() {
            "files.create" => files::create(host),
            "files.list" => files::list(host, &request),
            "files.retrieve" => files::retrieve(host, id()),
            "files.content" => files::content(host, id()),
            "files.delete" => files::delete(host, id()),
            "uploads.create" => uploads::create(host, &request),
            "uploads.parts" => uploads::add_part(host, id()),
            "uploads.complete" => uploads::complete(host, id(), &request),
            "uploads.cancel" => uploads::cancel(host, id()),
            other => Err(Error::NotFound(ErrorDetail {
                message: format!("the files plugin serves no route `{other}`"),
                param: None,
                code: Some("unknown_url".into()),
            })),
        }
    }

    fn step(&self, job: Job, host: &dyn JobHost) -> Result<Outcome, Error> {
        match job.kind.as_str() {
            expiry::JOB_KIND => expiry::step(job, host),
            other => Err(Error::Internal(format!(
                "the files plugin runs no `{other}` jobs"
            ))),
        }
    }
}

cinder_sdk::export_job_plugin!(FirstParty);

/// What a file is for (`purpose`), as OpenAI names them.
pub const PURPOSES: [&str; 6] = [
    "assistants",
    "batch",
    "fine-tune",
    "vision",
    "user_data",
    "evals",
];

/// Purposes whose files must be JSONL: checked line by line as they arrive.
pub fn needs_jsonl(purpose: &str) -> bool {
    matches!(purpose, "batch" | "fine-tune")
}

/// The purpose, checked; a 400 naming `purpose` otherwise.
pub(crate) fn purpose(value: &str) -> Result<String, Error> {
    if PURPOSES.contains(&value) {
        Ok(value.to_owned())
    } else {
        Err(cinder_sdk::invalid_request(
            &format!(
                "'{value}' is not one of {} - 'purpose'",
                PURPOSES.map(|p| format!("'{p}'")).join(", ")
            ),
            Some("purpose"),
        ))
    }
}
