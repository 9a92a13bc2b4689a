//! Chat calling tools: the host side of the `tools` import. A chat call's first tools call
//! instantiates the tools plugin that was loaded when the request started, in a store of its
//! own (its own memory cap and CPU budget, the same wall-clock and idle limits as the call
//! it serves), and keeps it for the rest of the request, so later calls (parsing the answer)
//! reach the same build. The guest only ever sees typed results: a missing or failing tools
//! plugin is an error value, never a trap of the caller.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Weak};

use tokio::sync::mpsc;
use tracing::warn;
use wasmtime::Store;

use crate::bindings::cinder::plugin::{tools, types};
use crate::bindings::tools_world::ToolsPlugin;
use crate::bindings::tools_world::exports::cinder::plugin::tools as x;
use crate::call::Output;
use crate::failure::describe_trap;
use crate::plugin::{Plugin, Pre};
use crate::state::HostState;

/// Makes the store a tools plugin runs in. The runtime implements it (it knows the limits
/// and the sandbox rules); this import sees only the trait, so it does not reach back into
/// the runtime that calls it.
pub(crate) trait StoreMaker: Send + Sync {
    /// A fresh store for `plugin`, writing to the caller's `out` and sharing its `progress`.
    fn store_for(
        &self,
        plugin: &Plugin,
        out: mpsc::Sender<Output>,
        progress: Arc<AtomicU64>,
        owner: &str,
    ) -> Store<HostState>;
}

/// What a store may reach through the `tools` import.
pub(crate) enum ToolsLink {
    /// Nothing: the store is a tools plugin's own (it cannot call itself).
    None,
    /// The tools plugin of the request's snapshot (none loaded: `plugin` is `None`).
    Chat {
        plugin: Option<Arc<Plugin>>,
        runtime: Weak<dyn StoreMaker>,
        session: Option<Box<Session>>,
    },
}

/// A live tools instance, for the rest of one request.
pub(crate) struct Session {
    store: Store<HostState>,
    tools: ToolsPlugin,
    id: String,
}

fn unavailable(message: impl Into<String>) -> types::Error {
    types::Error::Unavailable(message.into())
}

impl HostState {
    /// The request's tools instance, started on first use.
    async fn session(&mut self) -> Result<&mut Session, types::Error> {
        let ToolsLink::Chat {
            plugin,
            runtime,
            session,
        } = &mut self.tools
        else {
            return Err(unavailable("a tools plugin cannot call tools"));
        };
        if session.is_none() {
            let plugin = plugin.clone().ok_or_else(|| {
                unavailable("Tool calling needs a tools plugin, and none is loaded")
            })?;
            let runtime = runtime
                .upgrade()
                .ok_or_else(|| unavailable("the server is shutting down"))?;
            let Pre::Tools(pre) = &plugin.pre else {
                return Err(types::Error::Internal("not a tools plugin".into()));
            };
            let mut store = runtime.store_for(
                &plugin,
                self.out.clone(),
                self.progress.clone(),
                &self.owner,
            );
            let tools = match pre.instantiate_async(&mut store).await {
                Ok(t) => t,
                Err(e) => return Err(failed(&plugin.info.id, &e, &store)),
            };
            let id = format!("{}@{}", plugin.info.id, plugin.info.version);
            // The response says which tools build served it, as it says which chat build did.
            let _ = self.out.send(Output::Uses(id.clone())).await;
            *session = Some(Box::new(Session { store, tools, id }));
        }
        match session {
            Some(s) => Ok(s),
            None => Err(types::Error::Internal("no tools session".into())),
        }
    }

    /// After a tools call failed in the guest, its instance is unusable: the next call starts
    /// a fresh one.
    fn end_session(&mut self) {
        if let ToolsLink::Chat { session, .. } = &mut self.tools {
            *session = None;
        }
    }
}

fn failed(id: &str, e: &wasmtime::Error, store: &Store<HostState>) -> types::Error {
    let reason = describe_trap(e, store.data().cpu_ticks_left == 0);
    warn!(plugin = %id, error = %format!("{e:?}"), "tools plugin failed");
    types::Error::Internal(format!("The tools plugin `{id}` failed: {reason}"))
}

impl tools::Host for HostState {
    async fn render(
        &mut self,
        model: String,
        messages: Vec<tools::Message>,
        use_: Option<tools::ToolUse>,
    ) -> wasmtime::Result<Result<tools::Prompt, types::Error>> {
        let s = match self.session().await {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let messages: Vec<x::Message> = messages.into_iter().map(message).collect();
        let use_ = use_.map(tool_use);
        let r = s
            .tools
            .cinder_plugin_tools()
            .call_render(&mut s.store, &model, &messages, use_.as_ref())
            .await;
        Ok(match r {
            Ok(r) => r.map(|p| tools::Prompt {
                text: p.text,
                constraint: p.constraint,
                call_prefixes: p.call_prefixes,
            }),
            Err(e) => {
                let err = failed(&s.id, &e, &s.store);
                self.end_session();
                Err(err)
            }
        })
    }

    async fn parse(
        &mut self,
        model: String,
        text: String,
        use_: tools::ToolUse,
    ) -> wasmtime::Result<Result<Option<Vec<tools::Call>>, types::Error>> {
        let s = match self.session().await {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let r = s
            .tools
            .cinder_plugin_tools()
            .call_parse(&mut s.store, &model, &text, &tool_use(use_))
            .await;
        Ok(match r {
            Ok(r) => r.map(|calls| {
                calls.map(|calls| {
                    calls
                        .into_iter()
                        .map(|c| tools::Call {
                            id: c.id,
                            name: c.name,
                            arguments: c.arguments,
                        })
                        .collect()
                })
            }),
            Err(e) => {
                let err = failed(&s.id, &e, &s.store);
                self.end_session();
                Err(err)
            }
        })
    }
}

// The import and the export of `tools` are separate bindings with the same shapes.

fn call(c: tools::Call) -> x::Call {
    x::Call {
        id: c.id,
        name: c.name,
        arguments: c.arguments,
    }
}

fn message(m: tools::Message) -> x::Message {
    x::Message {
        role: m.role,
        content: m.content,
        calls: m.calls.into_iter().map(call).collect(),
        tool_call_id: m.tool_call_id,
    }
}

fn tool_use(t: tools::ToolUse) -> x::ToolUse {
    x::ToolUse {
        functions: t
            .functions
            .into_iter()
            .map(|f| x::Function {
                name: f.name,
                description: f.description,
                parameters: f.parameters,
            })
            .collect(),
        choice: match t.choice {
            tools::ToolChoice::Auto => x::ToolChoice::Auto,
            tools::ToolChoice::Required => x::ToolChoice::Required,
            tools::ToolChoice::Function(name) => x::ToolChoice::Function(name),
        },
        parallel: t.parallel,
    }
}
