//! A kit for families that generate with tools (chat, responses): an answer's text is held
//! back while it may still be a call envelope ([`Hold`]), and a call that repeats an earlier
//! one ends the answer ([`until_repeat`], [`repeats`]). The call format itself is the tools
//! plugin's (`parse`).

use serde_json::Value;

use crate::Error;
use crate::host::Host;
use crate::tools::{Call, ToolUse};

/// Where an answer's text goes while tools may be called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// Straight to the client.
    Stream,
    /// Held until its start says text (stream it) or a call (one of the tools plugin's call
    /// prefixes).
    Undecided(String),
    /// Held to the end, then read as calls.
    Calls(String),
}

impl Hold {
    /// How an answer starts: streamed without tools, held as calls when the output is
    /// constrained to calls (`required`, a named function), undecided otherwise.
    pub fn start(tools: bool, constrained_to_calls: bool) -> Self {
        match (tools, constrained_to_calls) {
            (false, _) => Hold::Stream,
            (true, true) => Hold::Calls(String::new()),
            (true, false) => Hold::Undecided(String::new()),
        }
    }

    /// Takes a piece of text; returns what may be sent now.
    pub fn take(&mut self, text: String, prefixes: &[String]) -> String {
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
    pub fn calls(&self) -> Option<&str> {
        match self {
            Hold::Calls(buf) => Some(buf),
            _ => None,
        }
    }
}

/// The calls before the first one that repeats an earlier call (same name, equal arguments
/// in any key order), and whether one did.
pub fn until_repeat(calls: Vec<Call>) -> (Vec<Call>, bool) {
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

/// Whether the envelope generated so far already repeats a call: the answer ends there.
pub fn repeats(
    host: &dyn Host,
    model: &str,
    envelope: &str,
    tools: Option<&ToolUse>,
) -> Result<bool, Error> {
    let Some(tools) = tools else {
        return Ok(false);
    };
    Ok(host
        .parse_tool_calls(model, envelope, tools)?
        .is_some_and(|calls| until_repeat(calls).1))
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

    #[test]
    fn text_is_held_only_while_it_may_be_a_call() {
        let prefixes = vec!["<tool_call>".to_owned()];
        let mut hold = Hold::start(true, false);
        assert_eq!(hold.take("  <tool_".into(), &prefixes), "");
        assert_eq!(hold.take("call>{".into(), &prefixes), "");
        assert_eq!(hold.calls(), Some("  <tool_call>{"));
        let mut text = Hold::start(true, false);
        assert_eq!(text.take("Hel".into(), &prefixes), "Hel");
        assert_eq!(text, Hold::Stream);
        assert_eq!(Hold::start(false, true), Hold::Stream);
    }
}
