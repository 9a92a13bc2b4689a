//! `/v1/fine_tuning/jobs`: OpenAI's rules for creating a job ([`JobParams`]) and for a
//! supervised training file in the chat format ([`check_chat_line`]), each mistake named by
//! parameter or by line.

use serde_json::{Map, Value};

use super::{Checked, Invalid};

/// The fields a create request may have.
const KNOWN: &[&str] = &[
    "model",
    "training_file",
    "validation_file",
    "hyperparameters",
    "method",
    "suffix",
    "seed",
    "metadata",
    "integrations",
];
/// OpenAI's bound on `suffix`.
pub const MAX_SUFFIX: usize = 64;
/// Seeds JSON clients read back exactly.
const MAX_SEED: i64 = (1 << 53) - 1;

/// One hyper-parameter: `"auto"` (the job picks) or a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Choice<T> {
    Auto,
    Value(T),
}

/// The supervised method's hyper-parameters, checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hyper {
    /// 1 to 50.
    pub n_epochs: Choice<u32>,
    /// 1 to 256.
    pub batch_size: Choice<u32>,
    /// Above 0, at most 100.
    pub learning_rate_multiplier: Choice<f64>,
}

impl Default for Hyper {
    fn default() -> Self {
        Hyper {
            n_epochs: Choice::Auto,
            batch_size: Choice::Auto,
            learning_rate_multiplier: Choice::Auto,
        }
    }
}

/// A create request with every OpenAI rule checked.
#[derive(Debug, Clone, PartialEq)]
pub struct JobParams {
    pub model: String,
    pub training_file: String,
    pub validation_file: Option<String>,
    pub hyper: Hyper,
    pub suffix: Option<String>,
    pub seed: Option<u64>,
    pub metadata: Option<Value>,
}

fn required_string(body: &Map<String, Value>, key: &str) -> Checked<String> {
    match body.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(Invalid::new(format!("{key} must not be empty"), key)),
        Some(_) => Err(Invalid::new(format!("{key} must be a string"), key)),
        None => Err(Invalid::new(
            format!("Missing required parameter: '{key}'."),
            key,
        )),
    }
}

fn choice<T>(
    value: Option<&Value>,
    param: &str,
    read: impl Fn(&Value) -> Option<T>,
    range: &str,
) -> Checked<Choice<T>> {
    match value {
        None | Some(Value::Null) => Ok(Choice::Auto),
        Some(Value::String(s)) if s == "auto" => Ok(Choice::Auto),
        Some(v) => read(v).map(Choice::Value).ok_or_else(|| {
            Invalid::new(
                format!("{param} must be \"auto\" or {range}; got {v}"),
                param,
            )
        }),
    }
}

fn hyper(value: Option<&Value>, at: &str) -> Checked<Hyper> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Hyper::default());
    };
    let Some(h) = value.as_object() else {
        return Err(Invalid::new(format!("{at} must be an object"), at));
    };
    let names = ["n_epochs", "batch_size", "learning_rate_multiplier"];
    if let Some(k) = h.keys().find(|k| !names.contains(&k.as_str())) {
        let param = format!("{at}.{k}");
        return Err(Invalid::new(
            format!("Unknown parameter: '{param}'."),
            param,
        ));
    }
    let int = |lo: u64, hi: u64| {
        move |v: &Value| {
            v.as_u64()
                .filter(|n| (lo..=hi).contains(n))
                .map(|n| n as u32)
        }
    };
    Ok(Hyper {
        n_epochs: choice(
            h.get("n_epochs"),
            &format!("{at}.n_epochs"),
            int(1, 50),
            "an integer from 1 to 50",
        )?,
        batch_size: choice(
            h.get("batch_size"),
            &format!("{at}.batch_size"),
            int(1, 256),
            "an integer from 1 to 256",
        )?,
        learning_rate_multiplier: choice(
            h.get("learning_rate_multiplier"),
            &format!("{at}.learning_rate_multiplier"),
            |v| v.as_f64().filter(|x| *x > 0.0 && *x <= 100.0),
            "a number above 0 and at most 100",
        )?,
    })
}

impl JobParams {
    /// Checks a create request's JSON body.
    pub fn check(body: &Value) -> Checked<JobParams> {
        let Some(body) = body.as_object() else {
            return Err(Invalid {
                message: "The body must be a JSON object".into(),
                param: None,
                code: None,
            });
        };
        if let Some(k) = body.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(Invalid {
                message: format!("Unknown parameter: '{k}'."),
                param: Some(k.clone()),
                code: Some("unknown_parameter".into()),
            });
        }
        let model = required_string(body, "model")?;
        let training_file = required_string(body, "training_file")?;
        let validation_file = match body.get("validation_file") {
            None | Some(Value::Null) => None,
            Some(_) => Some(required_string(body, "validation_file")?),
        };
        let legacy = hyper(body.get("hyperparameters"), "hyperparameters")?;
        let method = match body.get("method") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => return Err(Invalid::new("method must be an object", "method")),
        };
        let hyper = match method {
            None => legacy,
            Some(m) => {
                match m.get("type").and_then(Value::as_str) {
                    Some("supervised") => {}
                    Some(kind @ ("dpo" | "reinforcement")) => {
                        return Err(Invalid::new(
                            format!("method.type `{kind}` is not built in Cinder; `supervised` is"),
                            "method.type",
                        ));
                    }
                    _ => {
                        return Err(Invalid::new(
                            "method.type must be `supervised`, `dpo` or `reinforcement`",
                            "method.type",
                        ));
                    }
                }
                if body.get("hyperparameters").is_some_and(|h| !h.is_null()) {
                    return Err(Invalid::new(
                        "give hyperparameters in method.supervised.hyperparameters, not both there and at the top level",
                        "hyperparameters",
                    ));
                }
                let supervised = m.get("supervised").filter(|s| !s.is_null());
                hyper(
                    supervised.and_then(|s| s.get("hyperparameters")),
                    "method.supervised.hyperparameters",
                )?
            }
        };
        let suffix = match body.get("suffix") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
                if s.is_empty() || s.chars().count() > MAX_SUFFIX || !s.chars().all(ok) {
                    return Err(Invalid::new(
                        format!(
                            "suffix is 1 to {MAX_SUFFIX} letters, digits, `-` or `_`; got {s:?}"
                        ),
                        "suffix",
                    ));
                }
                Some(s.clone())
            }
            Some(_) => return Err(Invalid::new("suffix must be a string", "suffix")),
        };
        let seed = match body.get("seed") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_i64().filter(|s| (0..=MAX_SEED).contains(s)) {
                Some(s) => Some(s as u64),
                None => {
                    return Err(Invalid::new(
                        format!("seed must be an integer from 0 to {MAX_SEED}; got {v}"),
                        "seed",
                    ));
                }
            },
        };
        match body.get("integrations") {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(_) => {
                return Err(Invalid::new(
                    "integrations (Weights and Biases) are not available: Cinder reaches no outside service",
                    "integrations",
                ));
            }
        }
        Ok(JobParams {
            model,
            training_file,
            validation_file,
            hyper,
            suffix,
            seed,
            metadata: super::metadata(body.get("metadata").cloned())?,
        })
    }
}

/// The roles a training example's messages may have.
const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool"];

/// One line of a chat-format training file, checked: OpenAI's rules (a `messages` array of
/// known roles with string content, or an assistant's `tool_calls`; a `weight` of 0 or 1 on
/// assistant messages only; at least one assistant message that is trained on; `tools` an
/// array when present). The message names what is wrong, for the job's `error` with the line.
pub fn check_chat_line(line: &str) -> Result<Value, String> {
    let value: Value =
        serde_json::from_str(line).map_err(|e| format!("is not valid JSON ({e})"))?;
    let Some(example) = value.as_object() else {
        return Err("is not a JSON object".into());
    };
    let Some(messages) = example.get("messages").and_then(Value::as_array) else {
        return Err("has no `messages` array".into());
    };
    if let Some(tools) = example.get("tools")
        && !tools.is_array()
    {
        return Err("has `tools` that is not an array".into());
    }
    let mut trained = 0;
    for (i, m) in messages.iter().enumerate() {
        let at = |why: &str| format!("messages[{i}] {why}");
        let Some(m) = m.as_object() else {
            return Err(at("is not an object"));
        };
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if !ROLES.contains(&role) {
            return Err(at(&format!(
                "has role {:?}; expected one of {}",
                m.get("role").unwrap_or(&Value::Null),
                ROLES.join(", ")
            )));
        }
        let calls = m
            .get("tool_calls")
            .is_some_and(|c| c.as_array().is_some_and(|a| !a.is_empty()));
        match m.get("content") {
            Some(Value::String(_)) => {}
            Some(Value::Array(parts))
                if parts
                    .iter()
                    .all(|p| p.get("text").is_some_and(Value::is_string)) => {}
            None | Some(Value::Null) if role == "assistant" && calls => {}
            _ => return Err(at("has no text `content`")),
        }
        match m.get("weight") {
            None => {
                if role == "assistant" {
                    trained += 1;
                }
            }
            Some(w) if role == "assistant" && (w == 0 || w == 1) => {
                if w == 1 {
                    trained += 1;
                }
            }
            Some(_) if role == "assistant" => return Err(at("has a `weight` other than 0 or 1")),
            Some(_) => return Err(at("has a `weight`, which only assistant messages may have")),
        }
    }
    if trained == 0 {
        return Err("has no assistant message to train on".into());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn param(body: Value) -> Option<String> {
        JobParams::check(&body).expect_err("refused").param
    }

    #[test]
    fn a_create_request_is_checked_in_openais_terms() {
        let p = JobParams::check(&json!({
            "model": "gpt-4o-mini", "training_file": "file-a", "suffix": "my-model_2", "seed": 3,
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3, "batch_size": "auto"}}}
        }))
        .expect("ok");
        assert_eq!(p.hyper.n_epochs, Choice::Value(3));
        assert_eq!(p.hyper.batch_size, Choice::Auto);
        assert_eq!((p.suffix.as_deref(), p.seed), (Some("my-model_2"), Some(3)));
        let legacy = JobParams::check(&json!({"model": "m", "training_file": "f",
            "hyperparameters": {"learning_rate_multiplier": 0.5}}))
        .expect("ok");
        assert_eq!(legacy.hyper.learning_rate_multiplier, Choice::Value(0.5));
        let base = json!({"model": "m", "training_file": "f"});
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        assert_eq!(
            param(json!({"training_file": "f"})).as_deref(),
            Some("model")
        );
        assert_eq!(
            param(json!({"model": "m"})).as_deref(),
            Some("training_file")
        );
        for (body, p) in [
            (with("suffix", json!("has space")), "suffix"),
            (with("suffix", json!("x".repeat(65))), "suffix"),
            (with("seed", json!(-1)), "seed"),
            (
                with("hyperparameters", json!({"n_epochs": 0})),
                "hyperparameters.n_epochs",
            ),
            (
                with("hyperparameters", json!({"batch_size": "big"})),
                "hyperparameters.batch_size",
            ),
            (
                with("hyperparameters", json!({"warmup": 1})),
                "hyperparameters.warmup",
            ),
            (with("method", json!({"type": "dpo"})), "method.type"),
            (
                with(
                    "method",
                    json!({"type": "supervised", "supervised": {"hyperparameters": {"learning_rate_multiplier": 0}}}),
                ),
                "method.supervised.hyperparameters.learning_rate_multiplier",
            ),
            (
                with("integrations", json!([{"type": "wandb"}])),
                "integrations",
            ),
            (with("metadata", json!({"k": 1})), "metadata"),
            (with("validation_file", json!(7)), "validation_file"),
            (with("n_epochs", json!(3)), "n_epochs"),
        ] {
            assert_eq!(param(body.clone()).as_deref(), Some(p), "{body}");
        }
    }

    #[test]
    fn training_lines_follow_the_chat_format() {
        let ok = [
            r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}"#,
            r#"{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0}, {"role": "user", "content": "q2"}, {"role": "assistant", "content": "b"}]}"#,
            r#"{"messages": [{"role": "user", "content": "w?"}, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}, {"role": "tool", "tool_call_id": "c", "content": "1"}, {"role": "assistant", "content": "one"}], "tools": [{"type": "function", "function": {"name": "f"}}]}"#,
        ];
        for line in ok {
            assert!(check_chat_line(line).is_ok(), "{line}");
        }
        for (line, why) in [
            ("not json", "not valid JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"prompt": "p", "completion": "c"}"#, "no `messages`"),
            (
                r#"{"messages": [{"role": "user", "content": "q"}]}"#,
                "no assistant message",
            ),
            (
                r#"{"messages": [{"role": "robot", "content": "q"}, {"role": "assistant", "content": "a"}]}"#,
                "messages[0] has role",
            ),
            (
                r#"{"messages": [{"role": "user"}, {"role": "assistant", "content": "a"}]}"#,
                "messages[0] has no text",
            ),
            (
                r#"{"messages": [{"role": "user", "content": "q", "weight": 1}, {"role": "assistant", "content": "a"}]}"#,
                "only assistant",
            ),
            (
                r#"{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0}]}"#,
                "no assistant message",
            ),
            (
                r#"{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 2}]}"#,
                "other than 0 or 1",
            ),
        ] {
            let e = check_chat_line(line).expect_err(line);
            assert!(e.contains(why), "{line}: {e}");
        }
    }
}
