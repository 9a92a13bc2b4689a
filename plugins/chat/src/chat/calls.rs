//! How a choice's answer becomes tool calls: held back while it may be a call envelope,
//! watched for a repeated call while it is generated, and settled into calls or text when it
//! ends. The call format itself is the tools plugin's (`parse`); what chat guarantees is:
//!
//! - the envelope never reaches `content`, whatever ends the answer;
//! - complete calls are `tool_calls` with finish `tool_calls`, even when `max_tokens` cut a
//!   trailing call (which is dropped);
//! - an envelope cut before any call completed is empty `content`, no `tool_calls`, and the
//!   engine's finish reason (`length`);
//! - a call that repeats an earlier one (same name, equal arguments) ends the answer there:
//!   the generation is stopped and the calls before it are the answer.

use cinder_sdk::Error;
use cinder_sdk::calling::until_repeat;
use cinder_sdk::host::Host;
use cinder_sdk::openai::chat::{Delta, ToolCall, ToolCallFunction};
use cinder_sdk::types::FinishReason;

use super::Plan;

/// How a choice ended.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) enum Ending {
    /// The engine finished it.
    Engine(FinishReason),
    /// Chat stopped it: the model repeated a call.
    Repeat,
}

/// A choice's answer once it has ended.
pub(super) struct Settled {
    /// The calls it made.
    pub(super) calls: Vec<ToolCall>,
    /// OpenAI's finish reason.
    pub(super) finish: String,
    /// The answer was a call envelope (with or without complete calls).
    pub(super) envelope: bool,
}

/// Whether the envelope generated so far already repeats a call: the answer ends there.
pub(super) fn repeats(plan: &Plan, envelope: &str, host: &dyn Host) -> Result<bool, Error> {
    cinder_sdk::calling::repeats(host, &plan.model, envelope, plan.tools.as_ref())
}

/// Settles an answer: `text`, what was held back, is read as calls (via the tools plugin)
/// when the request has tools; otherwise (or when it is no envelope) the answer was text.
pub(super) fn settle(
    plan: &Plan,
    text: String,
    ending: Ending,
    id_prefix: &str,
    host: &dyn Host,
) -> Result<Settled, Error> {
    let engine_finish = match ending {
        Ending::Engine(reason) => crate::finish_reason(reason),
        Ending::Repeat => "stop".into(),
    };
    let parsed = match &plan.tools {
        // Nothing held back (streamed as text already): no call to ask the tools plugin about.
        Some(tools) if !text.trim().is_empty() => {
            host.parse_tool_calls(&plan.model, &text, tools)?
        }
        _ => None,
    };
    let Some(calls) = parsed else {
        return Ok(Settled {
            calls: Vec::new(),
            finish: engine_finish,
            envelope: false,
        });
    };
    let calls: Vec<ToolCall> = (0..)
        .zip(until_repeat(calls).0)
        .map(|(i, c)| ToolCall {
            id: if c.id.is_empty() {
                format!("call_{id_prefix}_{i}")
            } else {
                c.id
            },
            kind: "function".into(),
            function: ToolCallFunction {
                name: c.name,
                arguments: c.arguments,
            },
        })
        .collect();
    let finish = match (calls.is_empty(), plan.legacy_functions) {
        (true, _) => engine_finish,
        (false, true) => "function_call".into(),
        (false, false) => "tool_calls".into(),
    };
    Ok(Settled {
        calls,
        finish,
        envelope: true,
    })
}

/// A call as OpenAI streams it: `id`, `type` and name with empty arguments, then the arguments
/// (for `functions` requests, `function_call` with the name, then the arguments).
pub(super) fn call_deltas(index: u32, call: &ToolCall, legacy: bool) -> [Delta; 2] {
    use cinder_sdk::openai::chat::{ToolCallDelta, ToolCallDeltaFunction};
    if legacy {
        let delta = |f: ToolCallDeltaFunction| Delta {
            role: None,
            content: None,
            tool_calls: None,
            function_call: Some(f),
        };
        return [
            delta(ToolCallDeltaFunction {
                name: Some(call.function.name.clone()),
                arguments: String::new(),
            }),
            delta(ToolCallDeltaFunction {
                name: None,
                arguments: call.function.arguments.clone(),
            }),
        ];
    }
    let delta = |d: ToolCallDelta| Delta {
        role: None,
        content: None,
        tool_calls: Some(vec![d]),
        function_call: None,
    };
    [
        delta(ToolCallDelta {
            index,
            id: Some(call.id.clone()),
            kind: Some("function".into()),
            function: ToolCallDeltaFunction {
                name: Some(call.function.name.clone()),
                arguments: String::new(),
            },
        }),
        delta(ToolCallDelta {
            index,
            id: None,
            kind: None,
            function: ToolCallDeltaFunction {
                name: None,
                arguments: call.function.arguments.clone(),
            },
        }),
    ]
}
