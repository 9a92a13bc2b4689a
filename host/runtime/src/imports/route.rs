//! `cinder:plugin/route` (WIT 0.1.6): the manifest route the request matched, as data.

use crate::bindings::cinder::plugin::route;
use crate::state::HostState;

impl route::Host for HostState {
    fn current(&mut self) -> wasmtime::Result<Option<route::MatchedRoute>> {
        Ok(self.route.as_ref().map(|r| route::MatchedRoute {
            id: r.id.clone(),
            params: r.params.clone(),
        }))
    }
}
