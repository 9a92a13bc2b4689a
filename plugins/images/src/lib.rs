#![doc = include_str!("../README.md")]

pub mod edit;
pub mod generate;

use cinder_sdk::host::AgentHost;
use cinder_sdk::{Error, ErrorDetail, Job, Outcome, Request, Route, ServeAgent};

/// The first-party images plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct FirstParty;

impl ServeAgent for FirstParty {
    fn serve(&self, route: &Route, request: Request, host: &dyn AgentHost) -> Result<(), Error> {
        match route.id.as_str() {
            "images.generate" => generate::create(&request, host),
            "images.edit" => edit::edit(&request, host),
            "images.variation" => edit::variation(&request, host),
            other => Err(Error::NotFound(ErrorDetail {
                message: format!("the images plugin serves no route `{other}`"),
                param: None,
                code: Some("unknown_url".into()),
            })),
        }
    }

    fn step(&self, job: Job, _host: &dyn AgentHost) -> Result<Outcome, Error> {
        Err(Error::Internal(format!(
            "the images plugin runs no `{}` jobs",
            job.kind
        )))
    }
}

cinder_sdk::export_agent_plugin!(FirstParty);

/// A 400 naming `param`.
fn bad(message: impl Into<String>, param: &str) -> Error {
    cinder_sdk::openai::params::Invalid::new(message, param).into()
}
