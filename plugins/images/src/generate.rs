//! `POST /v1/images/generations`: OpenAI's request checked, the model's sizes and steps
//! applied, the images made by the host's image model and encoded here; whole, or streamed
//! as OpenAI's image generation events with partial images.

use base64::Engine as _;
use cinder_sdk::host::{AgentHost, ImageGeneration};
use cinder_sdk::images::{ImageEvent, ImageModelInfo, ImageRequest, ImageSize};
use cinder_sdk::openai::images::{
    COMPLETED_EVENT, ImageData, ImageGenerationRequest, ImageStreamEvent, ImageUsage,
    ImagesResponse, InputTokensDetails, PARTIAL_IMAGE_EVENT,
};
use cinder_sdk::openai::params::images::{Background, ImageParams, Quality, ResponseFormat, Size};
use cinder_sdk::{Error, Request};

use crate::bad;
use cinder_pictures::encode;

/// The model a request without `model` gets, unless the `default_model` setting names
/// another: an id or alias (the example config aliases its image model so).
pub const DEFAULT_MODEL: &str = "gpt-image-1";

/// How long an image's `url` serves it, unless the `url_expires_secs` setting says
/// otherwise: an hour, as OpenAI's.
pub const URL_EXPIRES_SECS: u64 = 3600;

/// What the host's names for a request's fields are as OpenAI's parameters.
pub(crate) const NAMES: &[(&str, &str)] = &[
    ("count", "n"),
    ("partial-images", "partial_images"),
    ("size", "size"),
    ("steps", "steps"),
    ("prompt", "prompt"),
    ("model", "model"),
    ("image", "image"),
    ("mask", "mask"),
    ("strength", "strength"),
];

/// Denoising steps for `quality` on a model whose default-quality image takes `default`
/// steps: `high` (and `hd`, `auto`) all of them, `medium` (and `standard`) three quarters,
/// `low` half, never fewer than one.
pub fn steps_for(quality: Quality, default: u32) -> u32 {
    let part = |num: u32, den: u32| (default * num).div_ceil(den).max(1);
    match quality {
        Quality::Auto | Quality::High | Quality::Hd => default.max(1),
        Quality::Medium | Quality::Standard => part(3, 4),
        Quality::Low => part(1, 2),
    }
}

/// Output tokens an image is billed as: one per 16x16 pixel patch (a 1024x1024 image is
/// 4096, close to what OpenAI bills a high-quality one).
pub fn image_tokens(width: u32, height: u32) -> u64 {
    u64::from(width.div_ceil(16)) * u64::from(height.div_ceil(16))
}

pub(crate) fn size_name(s: ImageSize) -> String {
    format!("{}x{}", s.width, s.height)
}

/// The size `size` asks of `info`'s model: `auto` is its default, anything else must be one
/// it lists.
fn pick_size(size: Size, info: &ImageModelInfo) -> Result<ImageSize, Error> {
    let listed = || {
        info.sizes
            .iter()
            .map(|s| format!("`{}`", size_name(*s)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match size {
        Size::Auto => info
            .sizes
            .first()
            .copied()
            .ok_or_else(|| Error::Internal(format!("the model `{}` lists no sizes", info.id))),
        Size::Exact { width, height } => info
            .sizes
            .iter()
            .find(|s| (s.width, s.height) == (width, height))
            .copied()
            .ok_or_else(|| {
                bad(
                    format!(
                        "size `{width}x{height}` is not one the model `{}` makes; it makes `auto`, {}",
                        info.id,
                        listed()
                    ),
                    "size",
                )
            }),
    }
}

/// Serves `POST /v1/images/generations`.
pub fn create(request: &Request, host: &dyn AgentHost) -> Result<(), Error> {
    let req: ImageGenerationRequest = cinder_sdk::parse_body(&request.body)?;
    let p = ImageParams::check(req)?;
    let wanted = prepare(&p, host)?;
    let generation = host.generate_images(&wanted).map_err(|e| e.naming(NAMES))?;
    let events = (PARTIAL_IMAGE_EVENT, COMPLETED_EVENT);
    respond(&p, wanted.size, generation.as_ref(), events, 0, host)
}

/// The request `p`'s images are made by, on the model it names (or the default): its size
/// and steps checked against the model, the things no model here can do refused by name.
pub(crate) fn prepare(p: &ImageParams, host: &dyn AgentHost) -> Result<ImageRequest, Error> {
    let model = p
        .model
        .clone()
        .or_else(|| host.setting("default_model"))
        .unwrap_or_else(|| DEFAULT_MODEL.to_owned());
    let info = host
        .describe_image_model(&model)
        .map_err(|e| e.naming(NAMES))?;
    let size = pick_size(p.size, &info)?;
    if p.background == Background::Transparent {
        return Err(bad(
            format!(
                "the model `{}` makes opaque images; a transparent background is not something it can make",
                info.id
            ),
            "background",
        ));
    }
    if p.style.is_some() {
        return Err(bad(
            "style is DALL·E 3's prompt rewriting, which Cinder's image models do not do; leave it out",
            "style",
        ));
    }
    let steps = p
        .steps
        .unwrap_or_else(|| steps_for(p.quality, info.default_steps));
    if steps > info.max_steps {
        return Err(bad(
            format!(
                "steps must be between 1 and {} for the model `{}`; got {steps}",
                info.max_steps, info.id
            ),
            "steps",
        ));
    }
    let wanted = ImageRequest {
        model: info.id.clone(),
        prompt: p.prompt.clone(),
        negative_prompt: p.negative_prompt.clone().unwrap_or_default(),
        size,
        steps,
        seed: p.seed.unwrap_or_else(cinder_sdk::random_seed),
        count: p.n,
        partial_images: if p.stream { p.partial_images } else { 0 },
    };
    Ok(wanted)
}

/// Reads `generation` to its end and answers: the images whole (as `b64_json` or `url`), or
/// streamed as the named `events` (partial, completed). `image_tokens_in` is what the
/// source image of an edit is billed as (0 for a generation).
pub(crate) fn respond(
    p: &ImageParams,
    size: ImageSize,
    generation: &dyn ImageGeneration,
    events: (&str, &str),
    image_tokens_in: u64,
    host: &dyn AgentHost,
) -> Result<(), Error> {
    let (partial_event, completed_event) = events;
    let out = Output {
        params: p,
        size: size_name(size),
        created: cinder_sdk::unix_time(),
    };
    let as_url = p.response_format == Some(ResponseFormat::Url);
    let url_expires = host
        .setting("url_expires_secs")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| (1..=7 * 86_400).contains(s))
        .unwrap_or(URL_EXPIRES_SECS);
    let mut prompt_tokens = 0u64;
    let mut data = Vec::new();
    while let Some(event) = generation.next().map_err(|e| e.naming(NAMES))? {
        match event {
            ImageEvent::Started(tokens) => prompt_tokens = u64::from(tokens),
            ImageEvent::Step(_) => {}
            ImageEvent::Partial(partial) if p.stream => {
                let picture = &partial.picture;
                let bytes = out.encode(&picture.rgb, picture.width, picture.height)?;
                host.send_named_json(
                    partial_event,
                    &out.event(partial_event, &bytes, Some(partial.index), None),
                )?;
            }
            ImageEvent::Partial(_) => {}
            ImageEvent::Done(made) => {
                let picture = &made.picture;
                let bytes = out.encode(&picture.rgb, picture.width, picture.height)?;
                if p.stream {
                    let first = made.image == 0;
                    let usage = usage(
                        if first { prompt_tokens } else { 0 },
                        if first { image_tokens_in } else { 0 },
                        image_tokens(picture.width, picture.height),
                    );
                    host.send_named_json(
                        completed_event,
                        &out.event(completed_event, &bytes, None, Some(usage)),
                    )?;
                } else if as_url {
                    data.push(ImageData {
                        url: Some(link(host, &bytes, p.output_format.mime(), url_expires)?),
                        ..ImageData::default()
                    });
                } else {
                    data.push(ImageData {
                        b64_json: Some(base64::engine::general_purpose::STANDARD.encode(&bytes)),
                        ..ImageData::default()
                    });
                }
            }
        }
    }
    if p.stream {
        return Ok(());
    }
    let output_tokens = data.len() as u64 * image_tokens(size.width, size.height);
    host.respond_json(
        200,
        &ImagesResponse {
            created: out.created,
            data,
            background: Some("opaque".into()),
            output_format: Some(p.output_format.name().into()),
            quality: Some(p.quality.echoed().into()),
            size: Some(out.size.clone()),
            usage: Some(usage(prompt_tokens, image_tokens_in, output_tokens)),
        },
    )
}

/// The image stored as a blob and linked for `expires_secs` (the host serves the link with
/// no key and removes the blob when it expires).
fn link(
    host: &dyn AgentHost,
    bytes: &[u8],
    mime: &str,
    expires_secs: u64,
) -> Result<String, Error> {
    let mut writer = host.blob_writer()?;
    for chunk in bytes.chunks(1 << 20) {
        writer.write(chunk)?;
    }
    let blob = writer.finish()?;
    host.share_blob(&blob.id, mime, cinder_sdk::unix_time() + expires_secs)
}

fn usage(text_tokens: u64, image_tokens_in: u64, output_tokens: u64) -> ImageUsage {
    ImageUsage {
        input_tokens: text_tokens + image_tokens_in,
        input_tokens_details: InputTokensDetails {
            image_tokens: image_tokens_in,
            text_tokens,
        },
        output_tokens,
        total_tokens: text_tokens + image_tokens_in + output_tokens,
    }
}

/// What every image of one response shares.
struct Output<'a> {
    params: &'a ImageParams,
    size: String,
    created: u64,
}

impl Output<'_> {
    fn encode(&self, rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, Error> {
        let p = self.params;
        encode(rgb, width, height, p.output_format, p.output_compression)
    }

    fn event(
        &self,
        kind: &str,
        bytes: &[u8],
        partial_image_index: Option<u32>,
        usage: Option<ImageUsage>,
    ) -> ImageStreamEvent {
        ImageStreamEvent {
            kind: kind.into(),
            b64_json: base64::engine::general_purpose::STANDARD.encode(bytes),
            created_at: self.created,
            size: self.size.clone(),
            quality: self.params.quality.echoed().into(),
            background: "opaque".into(),
            output_format: self.params.output_format.name().into(),
            partial_image_index,
            usage,
        }
    }
}
