//! Cinder's tools plugin: renders a request's tools into the prompt (through the model's
//! template when it has `tools` support, in the documented fallback format otherwise), gives
//! chat the grammar of required and named calls, and reads calls out of answers. The
//! behaviour is the SDK's tools family ([`cinder_sdk::tools::Tools`] defaults), so a
//! third-party tools plugin starts from exactly this and overrides a method.

#[derive(Default)]
struct FirstParty;

impl cinder_sdk::tools::Tools for FirstParty {}

cinder_sdk::export_tools!(FirstParty);
