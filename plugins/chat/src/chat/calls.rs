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

use serde_json::Value;

use cinder_sdk::Error;
use cinder_sdk::host::Host;
use cinder_sdk::openai::chat::{Delta, ToolCall, ToolCallFunction};
use cinder_sdk::tools::Call;
use cinder_sdk::types::FinishReason;

use super::Plan;

/// Where a choice's text goes while tools may be called.
#[derive(Clone)]
pub(super) enum Hold {
    /// Straight to the client.
    Stream,
    /// Held until its start says text (stream it) or a call (one of the tools plugin's call
    /// prefixes).
    Undecided(String),
    /// Held to the end, then sent as tool calls.
    Calls(String),
}

impl Hold {
    /// Takes a piece of text; returns what may be sent now.
    pub(super) fn take(&mut self, text: String, prefixes: &[String]) -> String {
        match self {
            Hold::Stream => text,
            Hold::Calls(buf) => {
                buf.push_str(&text);
                String::new()
            }
            Hold::Undecided(buf) => {
                buf.push_str(&text);
                let start = buf.trim_start();
                if start.is_empty() || prefixes.iter().any(|p| p.starts_with(start)) {
                    // Blank, or still the beginning of a call prefix (`<tool_` of `<tool_call>`).
                    String::new()
                } else if prefixes.iter().any(|p| start.starts_with(p.as_str())) {
                    *self = Hold::Calls(std::mem::take(buf));
                    String::new()
                } else {
                    let out = std::mem::take(buf);
                    *self = Hold::Stream;
                    out
                }
            }
        }
    }

    /// The envelope held so far, when the answer is a call.
    pub(super) fn calls(&self) -> Option<&str> {
        match self {
            Hold::Calls(buf) => Some(buf),
            _ => None,
        }
    }
}

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
    let Some(tools) = &plan.tools else {
        return Ok(false);
    };
    Ok(host
        .parse_tool_calls(&plan.model, envelope, tools)?
        .is_some_and(|calls| until_repeat(calls).1))
}

/// The calls before the first one that repeats an earlier call, and whether one did.
fn until_repeat(calls: Vec<Call>) -> (Vec<Call>, bool) {
    let mut seen: Vec<(String, Value)> = Vec::with_capacity(calls.len());
    let mut kept = Vec::with_capacity(calls.len());
    for c in calls {
        let args = serde_json::from_str(&c.arguments).unwrap_or(Value::Null);
        if seen.iter().any(|(n, a)| *n == c.name && *a == args) {
            return (kept, true);
        }
        seen.push((c.name.clone(), args));
        kept.push(c);
    }
    (kept, false)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, arguments: &str) -> Call {
        Call {
            id: String::new(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    #[test]
    fn a_repeated_call_ends_the_answer() {
        let (kept, repeated) = until_repeat(vec![
            call("w", r#"{"city":"Paris","unit":"c"}"#),
            call("w", r#"{"city":"London"}"#),
            call("t", r#"{"city":"Paris","unit":"c"}"#),
            // Equal arguments in another key order are the same call.
            call("w", r#"{"unit":"c","city":"Paris"}"#),
            call("w", r#"{"city":"Rome"}"#),
        ]);
        assert!(repeated);
        let cities: Vec<&str> = kept.iter().map(|c| c.arguments.as_str()).collect();
        assert_eq!(cities.len(), 3, "{cities:?}");
        assert!(!until_repeat(vec![call("w", "{}"), call("t", "{}")]).1);
    }
}
