#![doc = include_str!("../README.md")]

pub mod chat;
pub mod completions;
mod fan_in;
mod limits;

pub use chat::Chat;

use cinder_sdk::types::FinishReason;
use cinder_sdk::{Error, ErrorDetail, Host, Request, Route, Serve};

/// The first-party chat plugin: every [`Chat`] default.
#[derive(Debug, Default, Clone, Copy)]
pub struct FirstParty;

impl Chat for FirstParty {}

impl Serve for FirstParty {
    fn serve(&self, route: &Route, request: Request, host: &dyn Host) -> Result<(), Error> {
        match route.id.as_str() {
            "chat.create" => self.complete(request, host),
            "completions.create" => self.complete_legacy(request, host),
            "chat.list" | "chat.retrieve" | "chat.update" | "chat.delete" | "chat.messages" => {
                self.stored(route, request, host)
            }
            other => Err(Error::NotFound(ErrorDetail {
                message: format!("the chat plugin serves no route `{other}`"),
                param: None,
                code: Some("unknown_url".into()),
            })),
        }
    }
}

cinder_sdk::export_chat_plugin!(FirstParty);

/// The sampling arguments of a `generate-request` as OpenAI's request parameters (the
/// same in chat and legacy completions).
pub(crate) const SAMPLING_PARAMS: [(&str, &str); 5] = [
    ("sampling.temperature", "temperature"),
    ("sampling.top-p", "top_p"),
    ("sampling.presence-penalty", "presence_penalty"),
    ("sampling.frequency-penalty", "frequency_penalty"),
    ("sampling.logit-bias", "logit_bias"),
];

/// OpenAI's `finish_reason` for a generation that ended this way.
pub(crate) fn finish_reason(r: FinishReason) -> String {
    match r {
        FinishReason::Stop => "stop".into(),
        FinishReason::Length => "length".into(),
    }
}
