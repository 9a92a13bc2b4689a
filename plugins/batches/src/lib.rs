#![doc = include_str!("../README.md")]

pub mod batch;
pub mod lines;
pub mod routes;
pub mod run;
mod settings;

use cinder_sdk::host::JobHost;
use cinder_sdk::{Error, ErrorDetail, Job, Outcome, Request, Route, ServeJobs};

/// The first-party batches plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct FirstParty;

impl ServeJobs for FirstParty {
    fn serve(&self, route: &Route, request: Request, host: &dyn JobHost) -> Result<(), Error> {
        let id = || route.param("id").unwrap_or_default();
        match route.id.as_str() {
            "batches.create" => routes::create(host, &request),
            "batches.list" => routes::list(host, &request),
            "batches.retrieve" => routes::retrieve(host, id()),
            "batches.cancel" => routes::cancel(host, id()),
            other => Err(Error::NotFound(ErrorDetail {
                message: format!("the batches plugin serves no route `{other}`"),
                param: None,
                code: Some("unknown_url".into()),
            })),
        }
    }

    fn step(&self, job: Job, host: &dyn JobHost) -> Result<Outcome, Error> {
        match job.kind.as_str() {
            run::JOB_KIND => run::step(job, host),
            other => Err(Error::Internal(format!(
                "the batches plugin runs no `{other}` jobs"
            ))),
        }
    }
}

cinder_sdk::export_job_plugin!(FirstParty);
