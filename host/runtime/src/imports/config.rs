//! `cinder:plugin/config` (and `types`, which has no functions): the plugin's own settings
//! as of the call's start.

use crate::bindings::cinder::plugin::{config, types};
use crate::state::HostState;

impl types::Host for HostState {}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self
            .settings
            .binary_search_by(|(k, _)| k.as_str().cmp(&key))
            .ok()
            .map(|i| self.settings[i].1.clone()))
    }

    fn entries(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        Ok((*self.settings).clone())
    }
}
