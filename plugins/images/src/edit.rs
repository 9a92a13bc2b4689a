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

use crate::bad;
use crate::generate::{NAMES, image_tokens, prepare, respond};

/// Bytes an image or mask file may have, unless the `max_image_bytes` setting says
/// otherwise (DALL·E 2's limit is 4 MB; GPT image models take 50 MB, which would not fit a
/// plugin's default 64 MiB of memory beside the decoded pixels).
pub const MAX_IMAGE_BYTES: u64 = 8 << 20;
/// The largest side of an image or mask, in pixels, and the most pixels it may have: what
/// is decoded is bounded before any pixel is. A 2048x2048 image and its mask, decoded one
/// after the other with their files, stay under 48 MiB of the plugin's memory.
pub const MAX_SIDE: u32 = 4096;
pub const MAX_PIXELS: u64 = 2048 * 2048;
/// Bytes a text field may have (a prompt of 32,000 characters fits).
const MAX_FIELD_BYTES: usize = 256 << 10;
/// Bytes asked of the host per read.
const CHUNK: u32 = 1 << 20;

/// The form's fields that are numbers or booleans in the JSON body of a generation.
const INTEGERS: &[&str] = &["n", "output_compression", "partial_images", "seed", "steps"];

/// A decoded image: RGB bytes and, where the file has one, its alpha channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
    pub alpha: Option<Vec<u8>>,
}

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
            "image" | "image[]" => form.image = Some(read(host, "image", max_bytes)?),
            "mask" if form.mask.is_some() => {
                return Err(bad("the form has more than one mask", "mask"));
            }
            "mask" => form.mask = Some(read(host, "mask", max_bytes)?),
            _ => {
                let text = String::from_utf8(read(host, name, MAX_FIELD_BYTES as u64)?)
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

/// The current part's bytes, at most `max`; a 400 naming `param` past it.
fn read(host: &dyn AgentHost, param: &str, max: u64) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    loop {
        let chunk = host.read_part(CHUNK)?;
        if chunk.is_empty() {
            return Ok(out);
        }
        if (out.len() + chunk.len()) as u64 > max {
            return Err(bad(format!("`{param}` is larger than {max} bytes"), param));
        }
        // Grown a chunk at a time, not doubled: a file near the limit takes its own size.
        out.reserve_exact(chunk.len());
        out.extend_from_slice(&chunk);
    }
}

fn too_big(param: &str, width: u32, height: u32) -> Option<Error> {
    (width == 0
        || height == 0
        || width > MAX_SIDE
        || height > MAX_SIDE
        || u64::from(width) * u64::from(height) > MAX_PIXELS)
        .then(|| {
            bad(
                format!("`{param}` is {width}x{height}; images are 1 to {MAX_SIDE} pixels a side"),
                param,
            )
        })
}

/// A PNG, JPEG or WebP file as RGB (and alpha); anything else, or a broken file, is a 400
/// naming `param`.
pub fn decode(bytes: &[u8], param: &str) -> Result<Decoded, Error> {
    let broken =
        |e: &dyn std::fmt::Display| bad(format!("`{param}` could not be read: {e}"), param);
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder.read_info().map_err(|e| broken(&e))?;
        let (w, h) = (reader.info().width, reader.info().height);
        if let Some(e) = too_big(param, w, h) {
            return Err(e);
        }
        let size = reader
            .output_buffer_size()
            .ok_or_else(|| broken(&"too large"))?;
        let mut buf = vec![0; size];
        let info = reader.next_frame(&mut buf).map_err(|e| broken(&e))?;
        buf.truncate(info.buffer_size());
        return split(w, h, buf, info.color_type.samples(), param);
    }
    if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        use zune_jpeg::JpegDecoder;
        use zune_jpeg::zune_core::bytestream::ZCursor;
        use zune_jpeg::zune_core::colorspace::ColorSpace;
        use zune_jpeg::zune_core::options::DecoderOptions;
        let options = DecoderOptions::default()
            .set_max_width(MAX_SIDE as usize)
            .set_max_height(MAX_SIDE as usize)
            .jpeg_set_out_colorspace(ColorSpace::RGB);
        let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
        decoder.decode_headers().map_err(|e| broken(&e))?;
        let (w, h) = decoder.dimensions().ok_or_else(|| broken(&"no size"))?;
        if let Some(e) = too_big(param, w as u32, h as u32) {
            return Err(e);
        }
        let rgb = decoder.decode().map_err(|e| broken(&e))?;
        return split(w as u32, h as u32, rgb, 3, param);
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        let mut decoder =
            image_webp::WebPDecoder::new(std::io::Cursor::new(bytes)).map_err(|e| broken(&e))?;
        let (w, h) = decoder.dimensions();
        if let Some(e) = too_big(param, w, h) {
            return Err(e);
        }
        let size = decoder
            .output_buffer_size()
            .ok_or_else(|| broken(&"too large"))?;
        let channels = if decoder.has_alpha() { 4 } else { 3 };
        let mut buf = vec![0; size];
        decoder.read_image(&mut buf).map_err(|e| broken(&e))?;
        return split(w, h, buf, channels, param);
    }
    Err(bad(
        format!("`{param}` must be a PNG, JPEG or WebP image"),
        param,
    ))
}

/// Pixels of 1 to 4 channels (gray, gray+alpha, RGB, RGBA) as RGB and alpha, rewritten in
/// the decoder's own buffer (no second copy of the picture); a buffer that is not the size
/// the header gave is a 400 naming `param`.
fn split(
    width: u32,
    height: u32,
    mut buf: Vec<u8>,
    channels: usize,
    param: &str,
) -> Result<Decoded, Error> {
    let pixels = width as usize * height as usize;
    if channels == 0 || channels > 4 || buf.len() < pixels * channels {
        return Err(bad(
            format!("`{param}` decoded to fewer pixels than its {width}x{height} header"),
            param,
        ));
    }
    let mut alpha = (channels == 2 || channels == 4).then(|| Vec::with_capacity(pixels));
    if channels == 3 {
        buf.truncate(pixels * 3);
    } else {
        // Front to back: pixel i's three bytes land at or before where pixel i was read.
        for i in 0..pixels {
            let at = i * channels;
            let (r, g, b) = match channels {
                1 | 2 => (buf[at], buf[at], buf[at]),
                _ => (buf[at], buf[at + 1], buf[at + 2]),
            };
            if let Some(a) = alpha.as_mut() {
                a.push(buf[at + channels - 1]);
            }
            buf[i * 3] = r;
            buf[i * 3 + 1] = g;
            buf[i * 3 + 2] = b;
        }
        buf.truncate(pixels * 3);
        buf.shrink_to_fit();
    }
    Ok(Decoded {
        width,
        height,
        rgb: buf,
        alpha,
    })
}
