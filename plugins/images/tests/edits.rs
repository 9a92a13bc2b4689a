//! Edits and variations against the SDK's fake host: multipart forms as the OpenAI SDKs send
//! them, PNG/JPEG/WebP sources decoded, the mask from an alpha channel (the mask file's or
//! the image's own), the kept pixels passed through, strength defaults, the edit stream's
//! event names, and bad forms refused by name.

// Test code: a panic here is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use cinder_pictures::{decode, encode};
use cinder_plugin_images::FirstParty;
use cinder_plugin_images::generate::image_tokens;
use cinder_sdk::openai::params::images::OutputFormat;
use cinder_sdk::testing::{FakeHost, image_model};
use cinder_sdk::{Error, Request, Route, ServeAgent};
use serde_json::Value;

const MODEL: &str = "tiny-sd";

/// A form part: name, file name, content.
type Part<'a> = (&'a str, Option<&'a str>, &'a [u8]);

/// An RGBA PNG of `w x h`: a gradient, transparent where `clear(x, y)`.
fn rgba_png(w: u32, h: u32, clear: impl Fn(u32, u32) -> bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = png::Encoder::new(&mut out, w, h);
    e.set_color(png::ColorType::Rgba);
    e.set_depth(png::BitDepth::Eight);
    let mut data = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let a = if clear(x, y) { 0 } else { 255 };
            data.extend_from_slice(&[(x * 4) as u8, (y * 4) as u8, 200, a]);
        }
    }
    e.write_header().unwrap().write_image_data(&data).unwrap();
    out
}

fn gradient(w: u32, h: u32) -> Vec<u8> {
    (0..w * h)
        .flat_map(|i| [((i % w) * 4) as u8, ((i / w) * 4) as u8, 200])
        .collect()
}

/// Serves `route` with the form `parts`; the JSON answer.
fn call(route: &str, parts: &[(&str, Option<&str>, &[u8])]) -> (FakeHost, Result<Value, Error>) {
    let host = FakeHost::new("chat")
        .with_image_model(image_model(MODEL, &[(64, 64), (32, 32)]))
        .with_form(parts);
    let request = Request {
        method: "POST".into(),
        path: format!("/v1/images/{route}"),
        body: String::new(),
        request_id: "r".into(),
    };
    let route = if route == "edits" {
        "images.edit"
    } else {
        "images.variation"
    };
    let out = FirstParty
        .serve(&Route::new(route), request, &host)
        .map(|()| host.take_response().map(|r| r.1).unwrap_or(Value::Null));
    (host, out)
}

fn png_of(body: &Value, i: usize) -> Vec<u8> {
    let b64 = body["data"][i]["b64_json"].as_str().expect("b64_json");
    let data = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    decode(&data, "image").unwrap().rgb
}

fn param(e: Error) -> String {
    match e {
        Error::InvalidRequest(d) | Error::NotFound(d) => d.param.unwrap_or_default(),
        other => panic!("not a 400 or 404: {other:?}"),
    }
}

#[test]
fn an_edit_takes_its_mask_from_the_images_transparency_and_keeps_the_rest() {
    let image = rgba_png(64, 64, |x, y| {
        (16..48).contains(&x) && (16..48).contains(&y)
    });
    let (host, body) = call(
        "edits",
        &[
            ("image", Some("room.png"), &image),
            ("prompt", None, b"a red sofa"),
            ("model", None, MODEL.as_bytes()),
            ("size", None, b"64x64"),
            ("seed", None, b"5"),
            ("n", None, b"2"),
        ],
    );
    let body = body.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let sources = host.image_sources();
    let mask = sources[0]
        .mask
        .as_ref()
        .expect("the transparency is the mask");
    assert_eq!(sources[0].strength, 1.0, "a masked edit starts from noise");
    assert_eq!(mask.iter().filter(|&&m| m == 255).count(), 32 * 32);
    assert_eq!(host.image_requests()[0].prompt, "a red sofa");
    let rgb = png_of(&body, 0);
    let source = gradient(64, 64);
    for (i, &m) in mask.iter().enumerate() {
        if m == 0 {
            assert_eq!(rgb[i * 3..i * 3 + 3], source[i * 3..i * 3 + 3], "pixel {i}");
        }
    }
    assert_ne!(rgb, source, "the opened square is painted");
    // The image is billed as input, as OpenAI bills an edit's image.
    let usage = &body["usage"];
    assert_eq!(
        usage["input_tokens_details"]["image_tokens"],
        image_tokens(64, 64)
    );
    assert_eq!(
        usage["input_tokens"].as_u64().unwrap(),
        usage["input_tokens_details"]["text_tokens"]
            .as_u64()
            .unwrap()
            + image_tokens(64, 64)
    );
}

#[test]
fn a_mask_file_opens_its_transparent_pixels_and_an_unmasked_edit_is_image_to_image() {
    let image = encode(&gradient(40, 30), 40, 30, OutputFormat::Jpeg, Some(90)).unwrap();
    let mask = rgba_png(40, 30, |x, _| x < 10);
    let (host, body) = call(
        "edits",
        &[
            ("image[]", Some("a.jpg"), &image),
            ("mask", Some("mask.png"), &mask),
            ("prompt", None, b"snow"),
            ("model", None, MODEL.as_bytes()),
            ("strength", None, b"0.5"),
        ],
    );
    body.unwrap();
    let s = &host.image_sources()[0];
    assert_eq!((s.picture.width, s.picture.height), (40, 30));
    assert_eq!(s.strength, 0.5);
    let m = s.mask.as_ref().unwrap();
    assert!(
        m.iter()
            .enumerate()
            .all(|(i, &v)| v == if i % 40 < 10 { 255 } else { 0 })
    );
    // Steps: the fake runs steps x strength of them.
    let webp = encode(&gradient(32, 32), 32, 32, OutputFormat::Webp, None).unwrap();
    let (host, body) = call(
        "edits",
        &[
            ("image", Some("b.webp"), &webp),
            ("prompt", None, b"snow"),
            ("model", None, MODEL.as_bytes()),
        ],
    );
    body.unwrap();
    let s = &host.image_sources()[0];
    assert_eq!((s.mask.as_ref(), s.strength), (None, 0.8));
    assert_eq!(s.picture.rgb, gradient(32, 32), "WebP is lossless");
}

#[test]
fn a_variation_has_no_prompt_and_a_lighter_strength() {
    let image = rgba_png(64, 64, |_, _| false);
    let (host, body) = call(
        "variations",
        &[
            ("image", Some("a.png"), &image),
            ("model", None, MODEL.as_bytes()),
            ("n", None, b"1"),
            ("response_format", None, b"b64_json"),
        ],
    );
    let body = body.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(host.image_requests()[0].prompt, "");
    let s = &host.image_sources()[0];
    assert_eq!((s.mask.as_ref(), s.strength), (None, 0.7));
}

#[test]
fn a_streamed_edit_sends_the_edit_events() {
    let image = rgba_png(32, 32, |x, _| x < 8);
    let host = FakeHost::new("chat")
        .with_image_model(image_model(MODEL, &[(32, 32)]))
        .with_form(&[
            ("image", Some("a.png"), &image),
            ("prompt", None, b"p"),
            ("model", None, MODEL.as_bytes()),
            ("stream", None, b"true"),
            ("partial_images", None, b"1"),
            ("steps", None, b"4"),
        ]);
    let request = Request {
        method: "POST".into(),
        path: "/v1/images/edits".into(),
        body: String::new(),
        request_id: "r".into(),
    };
    FirstParty
        .serve(&Route::new("images.edit"), request, &host)
        .unwrap();
    let names: Vec<String> = host.named_events().into_iter().map(|e| e.0).collect();
    assert_eq!(names, ["image_edit.partial_image", "image_edit.completed"]);
}

#[test]
fn bad_forms_are_refused_by_name() {
    let png = rgba_png(8, 8, |_, _| false);
    let opaque_mask = encode(&gradient(8, 8), 8, 8, OutputFormat::Png, None).unwrap();
    let small_mask = rgba_png(4, 4, |_, _| true);
    let wide = rgba_png(5000, 1, |_, _| false);
    let m = MODEL.as_bytes();
    let cases: Vec<(&str, Vec<Part>, &str)> = vec![
        (
            "edits",
            vec![("prompt", None, b"p"), ("model", None, m)],
            "image",
        ),
        (
            "edits",
            vec![("image", Some("a"), b"GIF89a..."), ("prompt", None, b"p")],
            "image",
        ),
        (
            "edits",
            vec![("image", Some("a"), &png[..40]), ("prompt", None, b"p")],
            "image",
        ),
        (
            "edits",
            vec![("image", Some("a"), &wide), ("prompt", None, b"p")],
            "image",
        ),
        (
            "edits",
            vec![
                ("image", Some("a"), &png),
                ("image[]", Some("b"), &png),
                ("prompt", None, b"p"),
            ],
            "image",
        ),
        (
            "edits",
            vec![
                ("image", Some("a"), &png),
                ("mask", Some("m"), &small_mask),
                ("prompt", None, b"p"),
            ],
            "mask",
        ),
        (
            "edits",
            vec![
                ("image", Some("a"), &png),
                ("mask", Some("m"), &opaque_mask),
                ("prompt", None, b"p"),
            ],
            "mask",
        ),
        (
            "edits",
            vec![("image", Some("a"), &png), ("model", None, m)],
            "prompt",
        ),
        (
            "edits",
            vec![
                ("image", Some("a"), &png),
                ("prompt", None, b"p"),
                ("strength", None, b"0"),
            ],
            "strength",
        ),
        (
            "edits",
            vec![
                ("image", Some("a"), &png),
                ("prompt", None, b"p"),
                ("strength", None, b"x"),
            ],
            "strength",
        ),
        (
            "edits",
            vec![
                ("image", Some("a"), &png),
                ("prompt", None, b"p"),
                ("n", None, b"two"),
            ],
            "n",
        ),
        (
            "variations",
            vec![
                ("image", Some("a"), &png),
                ("model", None, m),
                ("size", None, b"7x7"),
            ],
            "size",
        ),
        (
            "variations",
            vec![
                ("image", Some("a"), &png),
                ("model", None, m),
                ("stream", None, b"yes"),
            ],
            "stream",
        ),
        (
            "variations",
            vec![
                ("image", Some("a"), &png),
                ("model", None, m),
                ("stream", None, b"true"),
            ],
            "stream",
        ),
        (
            "edits",
            vec![
                ("image", Some("a"), &png),
                ("mask", Some("m"), &png),
                ("mask", Some("m2"), &png),
                ("prompt", None, b"p"),
            ],
            "mask",
        ),
    ];
    for (route, parts, want) in cases {
        let (_, out) = call(route, &parts);
        assert_eq!(param(out.unwrap_err()), want, "{route} {parts:?}");
    }
}

#[test]
fn an_image_over_max_image_bytes_is_refused_before_it_is_decoded() {
    let png = rgba_png(64, 64, |_, _| false);
    let host = FakeHost::new("chat")
        .with_image_model(image_model(MODEL, &[(64, 64)]))
        .with_setting("max_image_bytes", "100")
        .with_form(&[("image", Some("a.png"), &png), ("prompt", None, b"p")]);
    let request = Request {
        method: "POST".into(),
        path: "/v1/images/edits".into(),
        body: String::new(),
        request_id: "r".into(),
    };
    let e = FirstParty
        .serve(&Route::new("images.edit"), request, &host)
        .unwrap_err();
    let Error::InvalidRequest(d) = e else {
        panic!("not a 400")
    };
    assert_eq!(d.param.as_deref(), Some("image"));
    assert!(d.message.contains("larger than 100 bytes"), "{}", d.message);
    assert!(host.image_requests().is_empty());
}
