//! OpenAI's error envelope: `{"error":{"message","type","param","code"}}`, all four keys present.

use serde::{Deserialize, Serialize};

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The error itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

impl ErrorBody {
    pub fn new(
        kind: &str,
        message: impl Into<String>,
        param: Option<String>,
        code: Option<String>,
    ) -> Self {
        ErrorBody {
            error: ErrorDetail {
                message: message.into(),
                kind: kind.to_owned(),
                param,
                code,
            },
        }
    }

    /// A 400 `invalid_request_error`.
    pub fn invalid_request(message: impl Into<String>, param: Option<&str>) -> Self {
        Self::new(
            "invalid_request_error",
            message,
            param.map(str::to_owned),
            None,
        )
    }

    /// The parameter a serde error is about, when its message names one
    /// (`missing field `messages``, `unknown variant ...`, `invalid type ... at line`).
    pub fn param_of_serde_error(message: &str) -> Option<String> {
        let (_, rest) = message.split_once("field `")?;
        let (field, _) = rest.split_once('`')?;
        Some(field.to_owned())
    }

    /// A 400 for a body that does not parse as the expected JSON.
    pub fn from_json_error(e: &serde_json::Error) -> Self {
        Self::from_path_error(e, "")
    }

    /// `body` as a `T`, with the paths of the fields `T` does not know (`brand_new`,
    /// `messages[0].extra`), which callers log and ignore: newer SDKs send fields a server
    /// may not know yet. A mistake is a 400 whose `param` is the path of the field at fault
    /// (`max_tokens`, `messages[0].role`, `tools[1].function.name`), found by
    /// serde_path_to_error instead of guessed from serde's message.
    pub fn parse_json<T: serde::de::DeserializeOwned>(
        body: &str,
    ) -> Result<(T, Vec<String>), Self> {
        let mut unknown = Vec::new();
        let mut de = serde_json::Deserializer::from_str(body);
        let mut note = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
        let ignoring = serde_ignored::Deserializer::new(&mut de, &mut note);
        let value: T = serde_path_to_error::deserialize(ignoring).map_err(|e| {
            let path = e.path().to_string();
            Self::from_path_error(e.inner(), if path == "." { "" } else { &path })
        })?;
        de.end().map_err(|e| Self::from_json_error(&e))?;
        Ok((value, unknown))
    }

    /// `path` is where the error happened (`""` for the top level); a missing field's name
    /// is added to it, since serde reports the object that lacks it.
    fn from_path_error(e: &serde_json::Error, path: &str) -> Self {
        let message = e.to_string();
        let param = if e.is_data() {
            match (Self::param_of_serde_error(&message), path) {
                (Some(field), "") if message.starts_with("missing field") => Some(field),
                (Some(field), p) if message.starts_with("missing field") => {
                    Some(format!("{p}.{field}"))
                }
                (field, "") => field,
                (_, p) => Some(p.to_owned()),
            }
        } else {
            None
        };
        let text = if e.is_syntax() || e.is_eof() {
            format!("We could not parse the JSON body of your request: {message}")
        } else {
            match &param {
                Some(p) => format!("Invalid value for `{p}`: {message}"),
                None => format!("Invalid request body: {message}"),
            }
        };
        Self::new("invalid_request_error", text, param, None)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| {
            String::from(
                r#"{"error":{"message":"error","type":"server_error","param":null,"code":null}}"#,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_all_four_keys() {
        let v: serde_json::Value =
            serde_json::from_str(&ErrorBody::invalid_request("bad", None).to_json()).unwrap();
        let e = &v["error"];
        for k in ["message", "type", "param", "code"] {
            assert!(e.get(k).is_some(), "{k}");
        }
        assert_eq!(e["type"], "invalid_request_error");
    }

    #[test]
    fn param_from_missing_field() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct R {
            messages: Vec<u8>,
        }
        let err = serde_json::from_str::<R>("{}").unwrap_err();
        assert_eq!(
            ErrorBody::from_json_error(&err).error.param.as_deref(),
            Some("messages")
        );
    }

    #[test]
    fn param_is_the_path_of_the_field_at_fault() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct M {
            role: String,
            content: Option<String>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct R {
            model: String,
            messages: Vec<M>,
            max_tokens: Option<u32>,
            stream: Option<bool>,
        }
        let param = |body: &str| {
            ErrorBody::parse_json::<R>(body)
                .map(|_| ())
                .unwrap_err()
                .error
                .param
        };
        let ok = r#""model":"m","messages":[{"role":"user"}]"#;
        assert_eq!(
            param(&format!(r#"{{{ok},"max_tokens":"10"}}"#)).as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            param(&format!(r#"{{{ok},"stream":1}}"#)).as_deref(),
            Some("stream")
        );
        assert_eq!(
            param(r#"{"model":123,"messages":[]}"#).as_deref(),
            Some("model")
        );
        assert_eq!(
            param(r#"{"model":"m","messages":[{"role":"user"},{"role":5}]}"#).as_deref(),
            Some("messages[1].role")
        );
        assert_eq!(
            param(r#"{"model":"m","messages":[{"content":"x"}]}"#).as_deref(),
            Some("messages[0].role")
        );
        assert_eq!(param(r#"{"messages":[]}"#).as_deref(), Some("model"));
        let syntax = ErrorBody::parse_json::<R>("{")
            .map(|_| ())
            .unwrap_err()
            .error;
        let trailing = r#"{"model":"m","messages":[]} x"#;
        assert!(ErrorBody::parse_json::<R>(trailing).is_err());
        let (_, unknown) =
            ErrorBody::parse_json::<R>(r#"{"model":"m","messages":[{"role":"u","x":1}],"new":{}}"#)
                .unwrap();
        assert_eq!(unknown, ["messages.0.x", "new"]);
        assert_eq!(syntax.param, None);
        assert!(syntax.message.starts_with("We could not parse"));
    }
}
