//! Cinder's chat plugin: owns `POST /v1/chat/completions`. The pipeline (validate every
//! parameter, chat template, n generations, stream or aggregate) lives in the SDK's chat family
//! as the default methods of [`cinder_sdk::chat::Chat`], so third-party chat plugins start from
//! exactly this behaviour and override a hook.

#[derive(Default)]
struct FirstParty;

impl cinder_sdk::chat::Chat for FirstParty {}

cinder_sdk::export_chat!(FirstParty);
