//! `POST /v1/images/edits` and `POST /v1/images/variations`: the multipart form read (the
//! image, the mask, the text fields as the generation's JSON fields), the images decoded here
//! (PNG, JPEG or WebP; their size checked from the header before a pixel is decoded), the mask
//! taken from an alpha channel as OpenAI's (fully transparent: edit here), and the images
//! made by the host's `edit-images`.
//!
//! An edit with a mask repaints what the mask opens and keeps every other pixel of the image
//! (resized to `size`) exactly; an edit without one (and an image without transparency) is
//! image-to-image on the whole picture. A variation is image-to-image with no prompt (or the
//! `prompt` sent as an extra field). `strength` (an extra field, above 0 and at most 1) is how
//! much of the schedule runs from the image noised to that step: 1 for a masked edit, 0.8 for
//! an unmasked one and 0.7 for a variation unless given.

use cinder_sdk::host::AgentHost;
use cinder_sdk::images::{Image, ImageSource};
use cinder_sdk::openai::images::{
    COMPLETED_EVENT, EDIT_COMPLETED_EVENT, EDIT_PARTIAL_IMAGE_EVENT, ImageGenerationRequest,
    PARTIAL_IMAGE_EVENT,
};
use cinder_sdk::openai::params::images::ImageParams;
use cinder_sdk::{Error, Request};
use serde_json::{Map, Value};

use cinder_pictures::{Decoded, decode};

use crate::bad;
use crate::generate::{NAMES, image_tokens, prepare, respond};

/// Bytes an image or mask file may have, unless the `max_image_bytes` setting says
/// otherwise (DALL·E 2's limit is 4 MB; GPT image models take 50 MB, which would not fit a
/// plugin's default 64 MiB of memory beside the decoded pixels).
pub const MAX_IMAGE_BYTES: u64 = 8 << 20;
/// Bytes a text field may have (a prompt of 32,000 characters fits).
const MAX_FIELD_BYTES: usize = 256 << 10;

/// The form's fields that are numbers or booleans in the JSON body of a generation.
const INTEGERS: &[&str] = &["n", "output_compression", "partial_images", "seed", "steps"];

/// The multipart form of an edit or a variation.
struct Form {
    fields: Map<String, Value>,
    image: Option<Vec<u8>>,
    mask: Option<Vec<u8>>,
    strength: Option<f32>,
}

/// Serves `POST /v1/images/edits`.
pub fn edit(_request: &Request, host: &dyn AgentHost) -> Result<(), Error> {
    let mut form = read_form(host)?;
    let strength = form.strength;
    check_strength(strength)?;
    let image = one_image(&mut form)?;
    let mask = match form.mask.take() {
        Some(bytes) => {
            let m = decode(&bytes, "mask")?;
            drop(bytes);
            if (m.width, m.height) != (image.width, image.height) {
                return Err(bad(
                    format!(
                        "the mask is {}x{} and the image {}x{}: they must be the same size",
                        m.width, m.height, image.width, image.height
                    ),
                    "mask",
                ));
            }
            let Some(alpha) = m.alpha else {
                return Err(bad(
                    "the mask must have an alpha channel: its fully transparent pixels are where the image is edited",
                    "mask",
                ));
            };
            // Only the opening is kept: the mask's colours are never used.
            drop(m.rgb);
            Some(opening(&alpha))
        }
        // No mask: the image's own transparency is the mask, where it has any.
        None => image
            .alpha
            .as_ref()
            .filter(|a| a.iter().any(|&v| v < 255))
            .map(|a| opening(a)),
    };
    let strength = strength.unwrap_or(if mask.is_some() { 1.0 } else { 0.8 });
    let req: ImageGenerationRequest = serde_json::from_value(Value::Object(form.fields))
        .map_err(|e| bad(format!("the form's fields: {e}"), "prompt"))?;
    let p = ImageParams::check(req)?;
    let events = (EDIT_PARTIAL_IMAGE_EVENT, EDIT_COMPLETED_EVENT);
    run(&p, image, mask, strength, events, host)
}

/// Serves `POST /v1/images/variations`.
pub fn variation(_request: &Request, host: &dyn AgentHost) -> Result<(), Error> {
    let mut form = read_form(host)?;
    check_strength(form.strength)?;
    if form.fields.get("stream") == Some(&Value::Bool(true)) {
        return Err(bad(
            "variations are not streamed (OpenAI's are not)",
            "stream",
        ));
    }
    let image = one_image(&mut form)?;
    let strength = form.strength.unwrap_or(0.7);
    // A variation has no prompt: without one the check sees a stand-in and the request
    // goes with none; a `prompt` sent as an extra field is checked as any prompt.
    let given = match form.fields.get("prompt") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    };
    if given.is_none() {
        form.fields
            .insert("prompt".into(), Value::String("variation".into()));
    }
    let req: ImageGenerationRequest = serde_json::from_value(Value::Object(form.fields))
        .map_err(|e| bad(format!("the form's fields: {e}"), "image"))?;
    let mut p = ImageParams::check(req)?;
    p.prompt = given.unwrap_or_default();
    run(
        &p,
        image,
        None,
        strength,
        (PARTIAL_IMAGE_EVENT, COMPLETED_EVENT),
        host,
    )
}

/// `strength`, when given, is above 0 and at most 1 (checked before anything is decoded).
fn check_strength(strength: Option<f32>) -> Result<(), Error> {
    match strength {
        Some(s) if !(s > 0.0 && s <= 1.0) => Err(bad(
            format!("strength must be above 0 and at most 1; got {s}"),
            "strength",
        )),
        _ => Ok(()),
    }
}

fn run(
    p: &ImageParams,
    image: Decoded,
    mask: Option<Vec<u8>>,
    strength: f32,
    events: (&str, &str),
    host: &dyn AgentHost,
) -> Result<(), Error> {
    check_strength(Some(strength))?;
    let wanted = prepare(p, host)?;
    let source = ImageSource {
        picture: Image {
            width: image.width,
            height: image.height,
            rgb: image.rgb,
        },
        mask,
        strength,
    };
    let generation = host
        .edit_images(&wanted, &source)
        .map_err(|e| e.naming(NAMES))?;
    // The host has its own copy: the plugin's memory is for the images coming back.
    drop(source);
    let tokens_in = image_tokens(wanted.size.width, wanted.size.height);
    respond(p, wanted.size, generation.as_ref(), events, tokens_in, host)
}

/// The form's image, decoded (its file dropped once it is).
fn one_image(form: &mut Form) -> Result<Decoded, Error> {
    match form.image.take() {
        Some(bytes) => decode(&bytes, "image"),
        None => Err(bad("an image file is required", "image")),
    }
}

/// An alpha channel as the host's mask: fully transparent is 255 (repaint), opaque 0 (keep),
/// and what is between in proportion.
fn opening(alpha: &[u8]) -> Vec<u8> {
    alpha.iter().map(|&a| 255 - a).collect()
}

fn read_form(host: &dyn AgentHost) -> Result<Form, Error> {
    let max_bytes = host
        .setting("max_image_bytes")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&b| b > 0)
        .unwrap_or(MAX_IMAGE_BYTES);
    let mut form = Form {
        fields: Map::new(),
        image: None,
        mask: None,
        strength: None,
    };
    while let Some(part) = host.next_part()? {
        let name = part.name.as_str();
        match name {
            // A second image is refused before it is read (the models edit one at a time).
            "image" | "image[]" if form.image.is_some() => {
                return Err(bad(
                    "Cinder's image models edit one image at a time; the form has more",
                    "image",
                ));
            }
            "image" | "image[]" => form.image = Some(host.read_part_within(max_bytes, "image")?),
            "mask" if form.mask.is_some() => {
                return Err(bad("the form has more than one mask", "mask"));
            }
            "mask" => form.mask = Some(host.read_part_within(max_bytes, "mask")?),
            _ => {
                let text = String::from_utf8(host.read_part_within(MAX_FIELD_BYTES as u64, name)?)
                    .map_err(|_| bad(format!("`{name}` is not UTF-8 text"), name))?;
                let not_a =
                    |what: &str| bad(format!("`{name}` must be {what}; got {text:?}"), name);
                let value = if name == "strength" {
                    form.strength = Some(text.trim().parse().map_err(|_| not_a("a number"))?);
                    continue;
                } else if INTEGERS.contains(&name) {
                    Value::from(
                        text.trim()
                            .parse::<i64>()
                            .map_err(|_| not_a("an integer"))?,
                    )
                } else if name == "stream" {
                    Value::Bool(text.trim().parse().map_err(|_| not_a("true or false"))?)
                } else {
                    Value::String(text)
                };
                form.fields.insert(name.to_owned(), value);
            }
        }
    }
    Ok(form)
}
