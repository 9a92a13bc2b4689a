#![doc = include_str!("../README.md")]

pub mod encode;
pub mod frames;
pub mod job;
pub mod record;
pub mod reference;
pub mod routes;
pub mod settings;

use cinder_sdk::host::AgentHost;
use cinder_sdk::{Error, ErrorDetail, Job, Outcome, Request, Route, ServeAgent};

/// The first-party videos plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct FirstParty;

impl ServeAgent for FirstParty {
    fn serve(&self, route: &Route, request: Request, host: &dyn AgentHost) -> Result<(), Error> {
        let id = route.param("video_id").unwrap_or_default();
        match route.id.as_str() {
            "videos.create" => routes::create(&request, host),
            "videos.list" => routes::list(&request, host),
            "videos.retrieve" => routes::retrieve(host, id),
            "videos.delete" => routes::delete(host, id),
            "videos.content" => routes::content(&request, host, id),
            "videos.remix" => routes::remix(&request, host, id),
            other => Err(Error::NotFound(ErrorDetail {
                message: format!("the videos plugin serves no route `{other}`"),
                param: None,
                code: Some("unknown_url".into()),
            })),
        }
    }

    fn step(&self, job: Job, host: &dyn AgentHost) -> Result<Outcome, Error> {
        match job.kind.as_str() {
            record::JOB_KIND => job::step(job, host),
            other => Err(Error::Internal(format!(
                "the videos plugin runs no `{other}` jobs"
            ))),
        }
    }
}

cinder_sdk::export_agent_plugin!(FirstParty);
