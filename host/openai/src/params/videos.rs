//! `/v1/videos`: OpenAI's rules for a video job's request checked into [`VideoParams`], and
//! the `variant` of `GET /v1/videos/{id}/content`. What depends on the model (its sizes) is
//! the plugin's check once it knows the model.

use super::images::{MAX_PROMPT_CHARS, Size, size};
use super::{Checked, Invalid};
use crate::videos::{VideoCreateRequest, VideoRemixRequest};

/// The clip lengths OpenAI's video models make, in seconds.
pub const SECONDS: [u32; 3] = [4, 8, 12];
/// Seeds JSON clients read back exactly (doubles).
const MAX_SEED: i64 = (1 << 53) - 1;

/// A video job's request with every OpenAI rule checked.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoParams {
    pub prompt: String,
    pub model: Option<String>,
    /// 4, 8 or 12 (4 when not given, as OpenAI's).
    pub seconds: u32,
    /// The model's default when `None`.
    pub size: Option<(u32, u32)>,
    pub seed: Option<u64>,
}

/// Which file of a finished video `GET /v1/videos/{id}/content` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Video,
    Thumbnail,
    Spritesheet,
}

impl Variant {
    /// `variant` from the query (`video` when absent).
    pub fn parse(value: Option<&str>) -> Checked<Variant> {
        match value {
            None | Some("video") => Ok(Variant::Video),
            Some("thumbnail") => Ok(Variant::Thumbnail),
            Some("spritesheet") => Ok(Variant::Spritesheet),
            Some(other) => Err(Invalid::new(
                format!("variant must be one of video, thumbnail, spritesheet; got `{other}`"),
                "variant",
            )),
        }
    }
}

fn prompt(p: &str) -> Checked<()> {
    if p.trim().is_empty() {
        return Err(Invalid::new("prompt must not be empty", "prompt"));
    }
    if p.chars().count() > MAX_PROMPT_CHARS {
        return Err(Invalid::new(
            format!("prompt is at most {MAX_PROMPT_CHARS} characters"),
            "prompt",
        ));
    }
    Ok(())
}

impl VideoParams {
    /// Checks a parsed create request.
    pub fn check(req: VideoCreateRequest) -> Checked<VideoParams> {
        prompt(&req.prompt)?;
        if req.model.as_deref() == Some("") {
            return Err(Invalid::new("model must not be empty", "model"));
        }
        let seconds = match &req.seconds {
            None => 4,
            Some(v) => {
                let n = match v {
                    serde_json::Value::String(s) => s.trim().parse::<u32>().ok(),
                    serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
                    _ => None,
                };
                match n.filter(|n| SECONDS.contains(n)) {
                    Some(n) => n,
                    None => {
                        return Err(Invalid::new(
                            format!("seconds must be one of \"4\", \"8\", \"12\"; got {v}"),
                            "seconds",
                        ));
                    }
                }
            }
        };
        let size = match size(req.size.as_deref())? {
            Size::Auto => None,
            Size::Exact { width, height } => Some((width, height)),
        };
        let seed = match req.seed {
            None => None,
            Some(s) if (0..=MAX_SEED).contains(&s) => Some(s as u64),
            Some(s) => {
                return Err(Invalid::new(
                    format!("seed must be between 0 and {MAX_SEED}; got {s}"),
                    "seed",
                ));
            }
        };
        Ok(VideoParams {
            prompt: req.prompt,
            model: req.model,
            seconds,
            size,
            seed,
        })
    }
}

/// Checks a remix request: its prompt.
pub fn check_remix(req: &VideoRemixRequest) -> Checked<()> {
    prompt(&req.prompt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(body: serde_json::Value) -> Checked<VideoParams> {
        VideoParams::check(serde_json::from_value(body).expect("a request"))
    }

    #[test]
    fn defaults_and_the_sdks_shapes() {
        let p = check(json!({"prompt": "a cat"})).expect("ok");
        assert_eq!((p.seconds, p.size, p.seed), (4, None, None));
        let p = check(json!({"prompt": "a cat", "seconds": "8", "size": "256x256", "seed": 3}))
            .expect("ok");
        assert_eq!((p.seconds, p.size, p.seed), (8, Some((256, 256)), Some(3)));
        assert_eq!(
            check(json!({"prompt": "p", "seconds": 12}))
                .expect("ok")
                .seconds,
            12
        );
    }

    #[test]
    fn bad_fields_are_named() {
        for (body, param) in [
            (json!({"prompt": " "}), "prompt"),
            (json!({"prompt": "p", "model": ""}), "model"),
            (json!({"prompt": "p", "seconds": "5"}), "seconds"),
            (json!({"prompt": "p", "seconds": -4}), "seconds"),
            (json!({"prompt": "p", "seconds": [4]}), "seconds"),
            (json!({"prompt": "p", "size": "big"}), "size"),
            (json!({"prompt": "p", "seed": -1}), "seed"),
        ] {
            let e = check(body.clone()).expect_err("refused");
            assert_eq!(e.param.as_deref(), Some(param), "{body}");
        }
        let long = "a".repeat(MAX_PROMPT_CHARS + 1);
        assert!(check_remix(&VideoRemixRequest { prompt: long }).is_err());
    }

    #[test]
    fn variants() {
        assert_eq!(Variant::parse(None), Ok(Variant::Video));
        assert_eq!(
            Variant::parse(Some("spritesheet")),
            Ok(Variant::Spritesheet)
        );
        assert_eq!(
            Variant::parse(Some("gif"))
                .expect_err("refused")
                .param
                .as_deref(),
            Some("variant")
        );
    }
}
