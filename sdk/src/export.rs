//! What a plugin exports, one macro per family world: [`export_chat_plugin!`] and
//! [`export_embeddings_plugin!`] export a [`Serve`] as the world's `handler`;
//! [`export_tools_plugin!`] exports a [`ToolsPlugin`] as `tools`; [`export_agent_plugin!`]
//! exports a [`ServeAgent`] as both `handler` and `job-runner`, so a family can answer now and
//! keep working in the background. A plugin exports only what its world serves, so each macro
//! generates exactly that world's exports.
//!
//! [`export_agent_plugin!`]: crate::export_agent_plugin
//! [`export_chat_plugin!`]: crate::export_chat_plugin
//! [`export_embeddings_plugin!`]: crate::export_embeddings_plugin
//! [`export_tools_plugin!`]: crate::export_tools_plugin

use crate::host::{AgentHost, Host, JobHost, StoreHost, Wasm};
use crate::sink::ResponseSink;
use crate::tools::{Call, Function, Message, Prompt, ToolChoice, ToolUse};
use crate::{Error, route};

/// One HTTP request the host routed to the plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, with the query string when there is one (`/v1/chat/completions?limit=2`).
    pub path: String,
    /// The raw body (JSON for OpenAI routes).
    pub body: String,
    /// The host's request id, for log correlation.
    pub request_id: String,
}

impl Request {
    /// The query string's pairs, decoded (`%XX` and `+`), in order.
    ///
    /// ```
    /// let r = cinder_sdk::Request {
    ///     method: "GET".into(),
    ///     path: "/v1/files?metadata%5Bteam%5D=search+ops&limit=2&after=x&pct=100%".into(),
    ///     body: String::new(),
    ///     request_id: String::new(),
    /// };
    /// let owned = r.query();
    /// let pairs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    /// assert_eq!(pairs, [("metadata[team]", "search ops"), ("limit", "2"), ("after", "x"), ("pct", "100%")]);
    /// ```
    pub fn query(&self) -> Vec<(String, String)> {
        match self.path.split_once('?') {
            Some((_, q)) => form_urlencoded::parse(q.as_bytes()).into_owned().collect(),
            None => Vec::new(),
        }
    }
}

/// The manifest route the host matched, handed over as data: a plugin dispatches on `id`
/// and reads path parameters from `params`, never matching the path again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The route's `id` in `plugin.toml` (`chat.create`), or `METHOD /pattern` without one.
    pub id: String,
    /// The path's `{name}` parameters and their values, in order.
    pub params: Vec<(String, String)>,
}

impl Route {
    /// A route with no parameters (tests build routes by hand).
    pub fn new(id: &str) -> Self {
        Route {
            id: id.to_owned(),
            params: Vec::new(),
        }
    }

    /// This route with the path parameter `name` set to `value`.
    pub fn with_param(mut self, name: &str, value: &str) -> Self {
        self.params.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The path parameter `name` (`id` of `/v1/chat/completions/{id}`).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl From<route::MatchedRoute> for Route {
    fn from(r: route::MatchedRoute) -> Self {
        Route {
            id: r.id,
            params: r.params,
        }
    }
}

/// A plugin that serves HTTP routes (the `chat-plugin` and `embeddings-plugin` worlds).
pub trait Serve {
    /// Handles one request on `route`, answering through `host`'s sink. An error returned
    /// before anything was written is the response; after events, it ends the stream.
    fn serve(&self, route: &Route, request: Request, host: &dyn Host) -> Result<(), Error>;
}

/// A plugin that serves a stateful family on the host's store (the `store-plugin` world, WIT
/// 0.1.7): like [`Serve`], but its host reaches the store and the multipart body, and no
/// model.
pub trait ServeStore {
    /// Handles one request on `route`, answering through `host`'s sink.
    fn serve(&self, route: &Route, request: Request, host: &dyn StoreHost) -> Result<(), Error>;
}

/// A job as the host hands it to [`ServeJobs::step`] (WIT 0.1.8 `job-runner.job`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The id given to [`crate::host::Jobs::enqueue_job`].
    pub id: String,
    /// Its kind, as the manifest names it (`batch`).
    pub kind: String,
    /// The record the previous step returned (or the one queued with it).
    pub progress: String,
    /// 1 on the first process that took it; more after a crash or restart.
    pub attempt: u32,
    /// A client asked it to stop.
    pub cancel_requested: bool,
    /// The host is ending the job with this reason: record it (the family's object failed)
    /// and return [`Outcome::Done`]; no step follows.
    pub ending: Option<String>,
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// More to do: the host saves this progress and calls the next step with it.
    More(String),
    /// The job is over; the family's object says how it ended.
    Done,
}

/// A family on the store that also works in the background (the `job-plugin` world, WIT
/// 0.1.8): it serves routes like a [`ServeStore`], queues jobs, and runs them a step at a
/// time. Each step is bounded like a request (wall clock, CPU, memory), so a long job is
/// many short steps; what a step returns is saved before the next one starts, and after a
/// crash the job resumes from the last saved progress.
pub trait ServeJobs {
    /// Handles one request on `route`, answering through `host`'s sink.
    fn serve(&self, route: &Route, request: Request, host: &dyn JobHost) -> Result<(), Error>;
    /// Runs one step of `job`; `host` has no response to write, but may [`dispatch`].
    ///
    /// [`dispatch`]: crate::host::Dispatch::dispatch
    fn step(&self, job: Job, host: &dyn JobHost) -> Result<Outcome, Error>;
}

/// A family that generates and also works in the background (the `agent-plugin` world, WIT
/// 0.1.9: responses with `background: true`): it serves routes like a [`Serve`], queues jobs,
/// and its steps generate as a request does. A step's generations yield to live traffic.
pub trait ServeAgent {
    /// Handles one request on `route`, answering through `host`'s sink.
    fn serve(&self, route: &Route, request: Request, host: &dyn AgentHost) -> Result<(), Error>;
    /// Runs one step of `job`; `host` has no response to write.
    fn step(&self, job: Job, host: &dyn AgentHost) -> Result<Outcome, Error>;
}

/// A tools plugin (the `tools-plugin` world): how tools shape a prompt and how answers
/// become calls, for every chat plugin that imports `tools`.
pub trait ToolsPlugin {
    /// Renders the conversation into a prompt, telling the model about `tools` when given.
    fn render(
        &self,
        model: &str,
        messages: Vec<Message>,
        tools: Option<ToolUse>,
        host: &dyn Host,
    ) -> Result<Prompt, Error>;

    /// Reads the calls out of an answer, finished or cut short: `None` when it is ordinary
    /// text, else the complete calls in order.
    fn parse(
        &self,
        model: &str,
        text: &str,
        tools: &ToolUse,
        host: &dyn Host,
    ) -> Result<Option<Vec<Call>>, Error>;
}

/// The glue the export macros expand to.
#[doc(hidden)]
pub mod glue {
    use super::*;

    /// The matched route and the request of one handler call.
    fn call(
        method: String,
        path: String,
        body: String,
        request_id: String,
    ) -> Result<(Route, Request), Error> {
        let route = route::current()
            .map(Route::from)
            .ok_or_else(|| Error::Internal("the host named no route for this request".into()))?;
        let request = Request {
            method,
            path,
            body,
            request_id,
        };
        Ok((route, request))
    }

    /// `$name::<T>` serves one handler call of a plugin whose trait is `$serve`: the route
    /// from the host, the host around `sink`.
    macro_rules! serve_fns {
        ($($name:ident: $serve:ident),* $(,)?) => {$(
            pub fn $name<T: $serve + Default>(
                method: String,
                path: String,
                body: String,
                request_id: String,
                sink: &ResponseSink,
            ) -> Result<(), Error> {
                let (route, request) = call(method, path, body, request_id)?;
                T::default().serve(&route, request, &Wasm::new(sink))
            }
        )*};
    }

    serve_fns!(
        serve: Serve,
        serve_store: ServeStore,
        serve_jobs: ServeJobs,
        serve_agent: ServeAgent,
    );

    use crate::bindings::job::exports::cinder::plugin::job_runner as j;

    fn job(job: j::Job) -> Job {
        Job {
            id: job.id,
            kind: job.kind,
            progress: job.progress,
            attempt: job.attempt,
            cancel_requested: job.cancel_requested,
            ending: job.ending,
        }
    }

    fn outcome(o: Outcome) -> j::Outcome {
        match o {
            Outcome::More(p) => j::Outcome::More(p),
            Outcome::Done => j::Outcome::Done,
        }
    }

    /// `job-runner.step` for a [`ServeJobs`].
    pub fn step<T: ServeJobs + Default>(j: j::Job) -> Result<j::Outcome, Error> {
        T::default()
            .step(job(j), &Wasm::without_sink())
            .map(outcome)
    }

    /// `job-runner.step` for a [`ServeAgent`].
    pub fn step_agent<T: ServeAgent + Default>(j: j::Job) -> Result<j::Outcome, Error> {
        T::default()
            .step(job(j), &Wasm::without_sink())
            .map(outcome)
    }

    use crate::bindings::tools::exports::cinder::plugin::tools as x;

    /// `tools.render` for a [`ToolsPlugin`]: the exported interface has its own copies of
    /// the types, converted here.
    pub fn render<T: ToolsPlugin + Default>(
        model: String,
        messages: Vec<x::Message>,
        tools: Option<x::ToolUse>,
    ) -> Result<x::Prompt, Error> {
        let messages = messages.into_iter().map(message).collect();
        T::default()
            .render(&model, messages, tools.map(tool_use), &Wasm::without_sink())
            .map(|p| x::Prompt {
                text: p.text,
                constraint: p.constraint,
                call_prefixes: p.call_prefixes,
            })
    }

    /// `tools.parse` for a [`ToolsPlugin`].
    pub fn parse<T: ToolsPlugin + Default>(
        model: String,
        text: String,
        tools: x::ToolUse,
    ) -> Result<Option<Vec<x::Call>>, Error> {
        let calls = T::default().parse(&model, &text, &tool_use(tools), &Wasm::without_sink())?;
        Ok(calls.map(|calls| {
            calls
                .into_iter()
                .map(|c| x::Call {
                    id: c.id,
                    name: c.name,
                    arguments: c.arguments,
                })
                .collect()
        }))
    }

    fn tool_use(t: x::ToolUse) -> ToolUse {
        ToolUse {
            functions: t
                .functions
                .into_iter()
                .map(|f| Function {
                    name: f.name,
                    description: f.description,
                    parameters: f.parameters,
                })
                .collect(),
            choice: match t.choice {
                x::ToolChoice::Auto => ToolChoice::Auto,
                x::ToolChoice::Required => ToolChoice::Required,
                x::ToolChoice::Function(name) => ToolChoice::Function(name),
            },
            parallel: t.parallel,
        }
    }

    fn message(m: x::Message) -> Message {
        Message {
            role: m.role,
            content: m.content,
            calls: m
                .calls
                .into_iter()
                .map(|c| Call {
                    id: c.id,
                    name: c.name,
                    arguments: c.arguments,
                })
                .collect(),
            tool_call_id: m.tool_call_id,
        }
    }
}

/// Exports a [`Serve`] (which must implement `Default`) as the `handler` of a `chat-plugin`:
/// the world for text generation and any endpoint of your own.
#[macro_export]
macro_rules! export_chat_plugin {
    ($ty:ty) => {
        $crate::__export_handler!($ty);
    };
}

/// Exports a [`Serve`] (which must implement `Default`) as the `handler` of an
/// `embeddings-plugin` (the world that imports `embeddings`). Both worlds export the same
/// `handler`; the manifest's `world` says which imports the plugin may have.
#[macro_export]
macro_rules! export_embeddings_plugin {
    ($ty:ty) => {
        $crate::__export_handler!($ty);
    };
}

/// Exports a [`ServeStore`] (which must implement `Default`) as the `handler` of a
/// `store-plugin` (WIT 0.1.7: a stateful family on the host's store, such as files or
/// batches). The handler is the same as a chat plugin's; the world says what it may import.
#[macro_export]
macro_rules! export_store_plugin {
    ($ty:ty) => {
        $crate::__export_handler!($ty, $crate::ServeStore, serve_store);
    };
}

/// Exports a [`ServeJobs`] (which must implement `Default`) as the `handler` and the
/// `job-runner` of a `job-plugin` (WIT 0.1.8: a family on the store with background jobs,
/// such as batches).
#[macro_export]
macro_rules! export_job_plugin {
    ($ty:ty) => {
        $crate::__export_job_runner!($ty, $crate::ServeJobs, serve_jobs, step);
    };
}

/// Exports a [`ServeAgent`] (which must implement `Default`) as the `handler` and the
/// `job-runner` of an `agent-plugin` (WIT 0.1.9: a family that generates and works in the
/// background, such as responses).
#[macro_export]
macro_rules! export_agent_plugin {
    ($ty:ty) => {
        $crate::__export_job_runner!($ty, $crate::ServeAgent, serve_agent, step_agent);
    };
}

/// The `handler` and `job-runner` exports of the worlds that run jobs.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_job_runner {
    ($ty:ty, $serve:path, $glue:ident, $step:ident) => {
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            let _ = <$ty as $serve>::step;
        };
        $crate::__export_handler!($ty, $serve, $glue);
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __CinderJobRunner;

            impl $crate::bindings::job::exports::cinder::plugin::job_runner::Guest for __CinderJobRunner {
                fn step(
                    job: $crate::bindings::job::exports::cinder::plugin::job_runner::Job,
                ) -> ::core::result::Result<$crate::bindings::job::exports::cinder::plugin::job_runner::Outcome, $crate::Error> {
                    $crate::export::glue::$step::<$ty>(job)
                }
            }

            $crate::bindings::job::export_job_runner_world!(__CinderJobRunner with_types_in $crate::bindings::job);
        };
    };
}

/// The `handler` export every route-serving world shares.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_handler {
    ($ty:ty) => {
        $crate::__export_handler!($ty, $crate::Serve, serve);
    };
    ($ty:ty, $serve:path, $glue:ident) => {
        // Natively (a plugin's own tests) the plugin is a library: nothing to export, but
        // what would be exported counts as used.
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            let _ = <$ty as $serve>::serve;
            let _ = <$ty as ::core::default::Default>::default;
        };
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __CinderHandler;

            impl $crate::bindings::handler::exports::cinder::plugin::handler::Guest for __CinderHandler {
                fn handle(
                    r: $crate::bindings::handler::exports::cinder::plugin::handler::Request,
                    sink: &$crate::sink::ResponseSink,
                ) -> ::core::result::Result<(), $crate::Error> {
                    $crate::export::glue::$glue::<$ty>(r.method, r.path, r.body, r.request_id, sink)
                }
            }

            $crate::bindings::handler::export_handler_world!(__CinderHandler with_types_in $crate::bindings::handler);
        };
    };
}

/// Exports a [`ToolsPlugin`] (which must implement `Default`) as the `tools` of a
/// `tools-plugin`; its manifest has no routes.
#[macro_export]
macro_rules! export_tools_plugin {
    ($ty:ty) => {
        // Natively (a plugin's own tests) the plugin is a library: nothing to export, but
        // what would be exported counts as used.
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            let _ = <$ty as $crate::ToolsPlugin>::render;
            let _ = <$ty as ::core::default::Default>::default;
        };
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __CinderToolsPlugin;

            impl $crate::bindings::tools::exports::cinder::plugin::tools::Guest for __CinderToolsPlugin {
                fn render(
                    model: ::std::string::String,
                    messages: ::std::vec::Vec<$crate::bindings::tools::exports::cinder::plugin::tools::Message>,
                    tools: ::core::option::Option<$crate::bindings::tools::exports::cinder::plugin::tools::ToolUse>,
                ) -> ::core::result::Result<$crate::bindings::tools::exports::cinder::plugin::tools::Prompt, $crate::Error> {
                    $crate::export::glue::render::<$ty>(model, messages, tools)
                }

                fn parse(
                    model: ::std::string::String,
                    text: ::std::string::String,
                    tools: $crate::bindings::tools::exports::cinder::plugin::tools::ToolUse,
                ) -> ::core::result::Result<::core::option::Option<::std::vec::Vec<$crate::bindings::tools::exports::cinder::plugin::tools::Call>>, $crate::Error> {
                    $crate::export::glue::parse::<$ty>(model, text, tools)
                }
            }

            $crate::bindings::tools::export_tools_world!(__CinderToolsPlugin with_types_in $crate::bindings::tools);
        };
    };
}
