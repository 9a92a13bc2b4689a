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
        let message = e.to_string();
        let param = if e.is_data() {
            Self::param_of_serde_error(&message)
        } else {
            None
        };
        let text = if e.is_syntax() || e.is_eof() {
            format!("We could not parse the JSON body of your request: {message}")
        } else {
            format!("Invalid request body: {message}")
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
}
