//! `POST /v1/images/generations`: every rule of OpenAI's image request checked into
//! [`ImageParams`]. What depends on the model (its sizes, its steps) is checked by the plugin
//! once it knows the model.

use super::{Checked, Invalid};
use crate::images::ImageGenerationRequest;

/// OpenAI's longest prompt (GPT image models), in characters.
pub const MAX_PROMPT_CHARS: usize = 32_000;
/// OpenAI's bounds on `n` and `partial_images`.
pub const MAX_IMAGES: u32 = 10;
pub const MAX_PARTIAL_IMAGES: u32 = 3;

/// `size`: the model's default, or exact pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Auto,
    Exact { width: u32, height: u32 },
}

/// `quality`, which Cinder maps to denoising steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    Auto,
    Low,
    Medium,
    High,
    /// DALL·E 3's names.
    Standard,
    Hd,
}

impl Quality {
    /// The name OpenAI's response echoes (`standard` and `hd` as the GPT image levels they
    /// stand for).
    pub fn echoed(self) -> &'static str {
        match self {
            Quality::Low => "low",
            Quality::Medium | Quality::Standard => "medium",
            Quality::Auto | Quality::High | Quality::Hd => "high",
        }
    }
}

/// How images come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    Url,
    B64Json,
}

/// `output_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Png,
    Jpeg,
    Webp,
}

impl OutputFormat {
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Png => "png",
            OutputFormat::Jpeg => "jpeg",
            OutputFormat::Webp => "webp",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            OutputFormat::Png => "image/png",
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Webp => "image/webp",
        }
    }
}

/// `background`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Background {
    Auto,
    Opaque,
    Transparent,
}

/// An image generation request with every OpenAI rule checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageParams {
    /// Not empty, at most [`MAX_PROMPT_CHARS`].
    pub prompt: String,
    pub model: Option<String>,
    /// 1 to [`MAX_IMAGES`].
    pub n: u32,
    pub size: Size,
    pub quality: Quality,
    /// `None`: not given (the plugin picks its default).
    pub response_format: Option<ResponseFormat>,
    pub output_format: OutputFormat,
    /// 0 to 100; only with `jpeg` or `webp`.
    pub output_compression: Option<u8>,
    pub background: Background,
    /// `vivid` or `natural`, when given.
    pub style: Option<String>,
    pub stream: bool,
    /// 0 to [`MAX_PARTIAL_IMAGES`].
    pub partial_images: u32,
    pub user: Option<String>,
    pub seed: Option<u64>,
    pub negative_prompt: Option<String>,
    /// At least 1 (the model's most is the plugin's check).
    pub steps: Option<u32>,
}

fn one_of<T: Copy>(
    param: &str,
    value: Option<&str>,
    default: T,
    choices: &[(&str, T)],
) -> Checked<T> {
    let Some(v) = value else {
        return Ok(default);
    };
    choices
        .iter()
        .find(|(name, _)| *name == v)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<String> = choices.iter().map(|(n, _)| format!("`{n}`")).collect();
            Invalid::new(
                format!("{param} must be one of {}; got `{v}`", names.join(", ")),
                param,
            )
        })
}

/// `WIDTHxHEIGHT` or `auto`.
pub fn size(value: Option<&str>) -> Checked<Size> {
    let Some(v) = value else {
        return Ok(Size::Auto);
    };
    if v == "auto" {
        return Ok(Size::Auto);
    }
    let side = |s: &str| {
        s.parse::<u32>()
            .ok()
            .filter(|n| (1..=16_384).contains(n) && s.bytes().all(|b| b.is_ascii_digit()))
    };
    match v.split_once('x').map(|(w, h)| (side(w), side(h))) {
        Some((Some(width), Some(height))) => Ok(Size::Exact { width, height }),
        _ => Err(Invalid::new(
            format!("size must be `auto` or WIDTHxHEIGHT (e.g. `1024x1024`); got `{v}`"),
            "size",
        )),
    }
}

impl ImageParams {
    /// Checks a parsed generation request.
    pub fn check(req: ImageGenerationRequest) -> Checked<ImageParams> {
        if req.prompt.trim().is_empty() {
            return Err(Invalid::new("prompt must not be empty", "prompt"));
        }
        if req.prompt.chars().count() > MAX_PROMPT_CHARS {
            return Err(Invalid::new(
                format!("prompt is at most {MAX_PROMPT_CHARS} characters"),
                "prompt",
            ));
        }
        if req.model.as_deref() == Some("") {
            return Err(Invalid::new("model must not be empty", "model"));
        }
        let n = match req.n {
            None => 1,
            Some(n) if (1..=i64::from(MAX_IMAGES)).contains(&n) => n as u32,
            Some(n) => {
                return Err(Invalid::new(
                    format!("n must be between 1 and {MAX_IMAGES}; got {n}"),
                    "n",
                ));
            }
        };
        use Quality as Q;
        let quality = one_of(
            "quality",
            req.quality.as_deref(),
            Q::Auto,
            &[
                ("auto", Q::Auto),
                ("low", Q::Low),
                ("medium", Q::Medium),
                ("high", Q::High),
                ("standard", Q::Standard),
                ("hd", Q::Hd),
            ],
        )?;
        let response_format = match req.response_format.as_deref() {
            None => None,
            Some(v) => Some(one_of(
                "response_format",
                Some(v),
                ResponseFormat::B64Json,
                &[
                    ("url", ResponseFormat::Url),
                    ("b64_json", ResponseFormat::B64Json),
                ],
            )?),
        };
        use OutputFormat as F;
        let output_format = one_of(
            "output_format",
            req.output_format.as_deref(),
            F::Png,
            &[("png", F::Png), ("jpeg", F::Jpeg), ("webp", F::Webp)],
        )?;
        let output_compression = match req.output_compression {
            None => None,
            Some(_) if output_format == F::Png => {
                return Err(Invalid::new(
                    "output_compression applies to the jpeg and webp output formats, not png",
                    "output_compression",
                ));
            }
            Some(c) if (0..=100).contains(&c) => Some(c as u8),
            Some(c) => {
                return Err(Invalid::new(
                    format!("output_compression must be between 0 and 100; got {c}"),
                    "output_compression",
                ));
            }
        };
        use Background as B;
        let background = one_of(
            "background",
            req.background.as_deref(),
            B::Auto,
            &[
                ("auto", B::Auto),
                ("opaque", B::Opaque),
                ("transparent", B::Transparent),
            ],
        )?;
        if background == B::Transparent && output_format == F::Jpeg {
            return Err(Invalid::new(
                "a transparent background needs the png or webp output format",
                "background",
            ));
        }
        one_of(
            "moderation",
            req.moderation.as_deref(),
            (),
            &[("auto", ()), ("low", ())],
        )?;
        one_of(
            "style",
            req.style.as_deref(),
            (),
            &[("vivid", ()), ("natural", ())],
        )?;
        let stream = req.stream.unwrap_or(false);
        let partial_images = match req.partial_images {
            None => 0,
            Some(p) if (0..=i64::from(MAX_PARTIAL_IMAGES)).contains(&p) => p as u32,
            Some(p) => {
                return Err(Invalid::new(
                    format!("partial_images must be between 0 and {MAX_PARTIAL_IMAGES}; got {p}"),
                    "partial_images",
                ));
            }
        };
        if stream && response_format == Some(ResponseFormat::Url) {
            return Err(Invalid::new(
                "a streamed generation sends its images as b64_json; leave response_format out or set it to b64_json",
                "response_format",
            ));
        }
        let seed = match req.seed {
            None => None,
            Some(s) if s >= 0 => Some(s as u64),
            Some(s) => {
                return Err(Invalid::new(
                    format!("seed must be a non-negative integer; got {s}"),
                    "seed",
                ));
            }
        };
        let steps = match req.steps {
            None => None,
            Some(s) if (1..=i64::from(u32::MAX)).contains(&s) => Some(s as u32),
            Some(s) => {
                return Err(Invalid::new(
                    format!("steps must be at least 1; got {s}"),
                    "steps",
                ));
            }
        };
        if req
            .negative_prompt
            .as_ref()
            .is_some_and(|p| p.chars().count() > MAX_PROMPT_CHARS)
        {
            return Err(Invalid::new(
                format!("negative_prompt is at most {MAX_PROMPT_CHARS} characters"),
                "negative_prompt",
            ));
        }
        Ok(ImageParams {
            size: size(req.size.as_deref())?,
            prompt: req.prompt,
            model: req.model,
            n,
            quality,
            response_format,
            output_format,
            output_compression,
            background,
            style: req.style,
            stream,
            partial_images,
            user: req.user,
            seed,
            negative_prompt: req.negative_prompt,
            steps,
        })
    }
}
