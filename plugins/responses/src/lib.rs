#![doc = include_str!("../README.md")]

pub mod background;
pub mod conversations;
mod emit;
pub mod file_search;
pub mod items;
pub mod run;
pub mod stored;

use serde_json::json;

use cinder_sdk::host::AgentHost;
use cinder_sdk::openai::responses::{Deleted, ItemList, OutputItem};
use cinder_sdk::{Error, ErrorDetail, Host, Job, Outcome, Request, Route, ServeAgent};

/// The first-party responses plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct FirstParty;

impl ServeAgent for FirstParty {
    fn serve(&self, route: &Route, request: Request, host: &dyn AgentHost) -> Result<(), Error> {
        let id = || route.param("id").unwrap_or_default();
        match route.id.as_str() {
            "responses.create" => run::create(request, host),
            "responses.input_tokens" => input_tokens(request, host),
            "responses.retrieve" => retrieve(id(), &request, host),
            "responses.delete" => delete(id(), host),
            "responses.cancel" => background::cancel(id(), host),
            "responses.input_items" => input_items(id(), &request, host),
            c if c.starts_with("conversations.") => conversations::serve(route, request, host),
            other => Err(Error::NotFound(ErrorDetail {
                message: format!("the responses plugin serves no route `{other}`"),
                param: None,
                code: Some("unknown_url".into()),
            })),
        }
    }

    fn step(&self, job: Job, host: &dyn AgentHost) -> Result<Outcome, Error> {
        match job.kind.as_str() {
            background::KIND => background::step(job, host),
            other => Err(Error::Internal(format!(
                "the responses plugin runs no `{other}` jobs"
            ))),
        }
    }
}

cinder_sdk::export_agent_plugin!(FirstParty);

fn retrieve(id: &str, request: &Request, host: &dyn Host) -> Result<(), Error> {
    if request
        .query()
        .iter()
        .any(|(k, v)| k == "stream" && v == "true")
    {
        return background::stream(id, request, host);
    }
    let stored = stored::load(host, id)?.ok_or_else(|| stored::not_found(id))?;
    host.respond_json(200, &stored.response)
}

fn delete(id: &str, host: &dyn AgentHost) -> Result<(), Error> {
    if !stored::is_id(id) || !host.delete_object(stored::COLLECTION, id)? {
        return Err(stored::not_found(id));
    }
    // A background response still running stops at its step's next look.
    host.cancel_job(id)?;
    background::delete_log(host, id)?;
    host.respond_json(
        200,
        &Deleted {
            id: id.to_owned(),
            object: "response".into(),
            deleted: true,
        },
    )
}

/// `GET /v1/responses/{id}/input_items`: the response's own input items, newest first by
/// default (`order`, `limit` 1 to 100, `after`).
fn input_items(id: &str, request: &Request, host: &dyn Host) -> Result<(), Error> {
    let stored = stored::load(host, id)?.ok_or_else(|| stored::not_found(id))?;
    let mut limit = 20usize;
    let mut ascending = false;
    let mut after: Option<String> = None;
    for (k, v) in request.query() {
        match k.as_str() {
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| {
                        cinder_sdk::invalid_request("limit is 1 to 100", Some("limit"))
                    })?;
            }
            "order" => {
                ascending = match v.as_str() {
                    "asc" => true,
                    "desc" => false,
                    _ => {
                        return Err(cinder_sdk::invalid_request(
                            "order is asc or desc",
                            Some("order"),
                        ));
                    }
                }
            }
            "after" => after = Some(v),
            // `include` names extra fields of output items; input items have none here.
            "include" | "include[]" => {}
            other => {
                return Err(cinder_sdk::invalid_request(
                    &format!("Unknown parameter: '{other}'."),
                    Some(other),
                ));
            }
        }
    }
    let mut all: Vec<OutputItem> = stored.input;
    if !ascending {
        all.reverse();
    }
    let start = match after {
        Some(a) => {
            all.iter().position(|i| i.id() == a).ok_or_else(|| {
                cinder_sdk::invalid_request(&format!("No item with id '{a}'"), Some("after"))
            })? + 1
        }
        None => 0,
    };
    let rest = all.split_off(start.min(all.len()));
    let has_more = rest.len() > limit;
    let data: Vec<OutputItem> = rest.into_iter().take(limit).collect();
    host.respond_json(
        200,
        &ItemList {
            object: "list".into(),
            first_id: data.first().map(|i| i.id().to_owned()),
            last_id: data.last().map(|i| i.id().to_owned()),
            has_more,
            data,
        },
    )
}

/// `POST /v1/responses/input_tokens`: the tokens a create request with this body would read.
fn input_tokens(request: Request, host: &dyn Host) -> Result<(), Error> {
    let plan = run::Plan::build(&request, host)?;
    let (_, ids) = run::prompt_tokens(&plan, host)?;
    host.respond_json(
        200,
        &json!({"object": "response.input_tokens", "input_tokens": ids.len()}),
    )
}
