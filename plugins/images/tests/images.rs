//! The images plugin against the SDK's fake host (its image model paints a pattern from the
//! seed): OpenAI's request shapes, sizes and steps from the model, every output format
//! decoded back, streaming with partial images, and bad input refused by name (edits and
//! variations: tests/edits.rs).

// Test code: a panic here is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use cinder_plugin_images::FirstParty;
use cinder_plugin_images::generate::{image_tokens, steps_for};
use cinder_sdk::openai::params::images::Quality;
use cinder_sdk::testing::{FakeHost, fake_picture, image_model};
use cinder_sdk::{Error, Request, Route, ServeAgent};
use serde_json::{Value, json};

const MODEL: &str = "tiny-sd";

fn host() -> FakeHost {
    FakeHost::new("chat").with_image_model(image_model(MODEL, &[(64, 64), (32, 32), (96, 64)]))
}

fn call(host: &FakeHost, route: &str, body: Value) -> Result<Value, Error> {
    let request = Request {
        method: "POST".into(),
        path: "/v1/images/generations".into(),
        body: body.to_string(),
        request_id: "r".into(),
    };
    FirstParty.serve(&Route::new(route), request, host)?;
    Ok(host.take_response().map(|r| r.1).unwrap_or(Value::Null))
}

fn generate(host: &FakeHost, body: Value) -> Result<Value, Error> {
    call(host, "images.generate", body)
}

/// A streamed generation's named events.
fn stream(host: &FakeHost, body: Value) -> Vec<(String, Value)> {
    let request = Request {
        method: "POST".into(),
        path: "/v1/images/generations".into(),
        body: body.to_string(),
        request_id: "r".into(),
    };
    FirstParty
        .serve(&Route::new("images.generate"), request, host)
        .unwrap();
    assert!(host.response().is_none(), "no whole response");
    host.named_events()
}

fn param(e: Error) -> String {
    match e {
        Error::InvalidRequest(d) | Error::NotFound(d) => d.param.unwrap_or_default(),
        other => panic!("not a 400 or 404: {other:?}"),
    }
}

fn bytes(b64: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(b64.as_str().expect("b64_json"))
        .expect("base64")
}

fn decode_png(data: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(data));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn a_generation_is_a_png_of_the_size_asked_with_usage() {
    let host = host();
    let body = generate(
        &host,
        json!({"model": MODEL, "prompt": "a red fox in the snow", "size": "96x64", "seed": 7}),
    )
    .unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    let (w, h, rgb) = decode_png(&bytes(&body["data"][0]["b64_json"]));
    assert_eq!((w, h), (96, 64));
    assert_eq!(
        rgb,
        fake_picture(96, 64, 7).rgb,
        "the host's pixels, losslessly"
    );
    assert_eq!(body["size"], "96x64");
    assert_eq!(body["output_format"], "png");
    assert_eq!(body["quality"], "high");
    assert!(body["created"].as_u64().unwrap() > 0);
    let usage = &body["usage"];
    // The fake counts words plus the start and end tokens.
    assert_eq!(usage["input_tokens"], 8);
    assert_eq!(usage["input_tokens_details"]["text_tokens"], 8);
    assert_eq!(usage["output_tokens"], image_tokens(96, 64));
    assert_eq!(usage["total_tokens"], 8 + image_tokens(96, 64));
    let asked = host.image_requests();
    assert_eq!(
        asked[0].steps, 4,
        "the model's default steps for auto quality"
    );
    assert_eq!(asked[0].count, 1);
}

#[test]
fn n_images_take_consecutive_seeds_and_the_same_seed_the_same_images() {
    let host = host();
    let one = generate(
        &host,
        json!({"model": MODEL, "prompt": "p", "n": 3, "seed": 40}),
    )
    .unwrap();
    let again = generate(
        &host,
        json!({"model": MODEL, "prompt": "p", "n": 3, "seed": 40}),
    )
    .unwrap();
    assert_eq!(one["data"], again["data"]);
    let images: Vec<Vec<u8>> = (0..3)
        .map(|i| decode_png(&bytes(&one["data"][i]["b64_json"])).2)
        .collect();
    for (i, rgb) in images.iter().enumerate() {
        assert_eq!(*rgb, fake_picture(64, 64, 40 + i as u64).rgb);
    }
    assert_eq!(host.image_requests()[0].count, 3);
    assert_eq!(one["usage"]["output_tokens"], 3 * image_tokens(64, 64));
}

#[test]
fn jpeg_and_webp_decode_to_the_size_asked() {
    let host = host();
    let body = generate(
        &host,
        json!({"model": MODEL, "prompt": "p", "output_format": "webp", "size": "32x32", "seed": 1}),
    )
    .unwrap();
    let data = bytes(&body["data"][0]["b64_json"]);
    let mut webp = image_webp::WebPDecoder::new(std::io::Cursor::new(&data)).expect("webp");
    assert_eq!(webp.dimensions(), (32, 32));
    let mut rgb = vec![0; webp.output_buffer_size().unwrap()];
    webp.read_image(&mut rgb).unwrap();
    assert_eq!(rgb, fake_picture(32, 32, 1).rgb, "webp is lossless");

    let body = generate(
        &host,
        json!({"model": MODEL, "prompt": "p", "output_format": "jpeg", "output_compression": 50}),
    )
    .unwrap();
    assert_eq!(body["output_format"], "jpeg");
    let data = bytes(&body["data"][0]["b64_json"]);
    let mut jpeg =
        zune_jpeg::JpegDecoder::new(zune_jpeg::zune_core::bytestream::ZCursor::new(&data));
    jpeg.decode_headers().expect("jpeg header");
    assert_eq!(jpeg.dimensions(), Some((64, 64)));
    let high = generate(
        &host,
        json!({"model": MODEL, "prompt": "p", "output_format": "jpeg", "seed": 3}),
    )
    .unwrap();
    let low = generate(
        &host,
        json!({"model": MODEL, "prompt": "p", "output_format": "jpeg", "output_compression": 10, "seed": 3}),
    )
    .unwrap();
    assert!(
        bytes(&low["data"][0]["b64_json"]).len() < bytes(&high["data"][0]["b64_json"]).len(),
        "output_compression is the JPEG quality"
    );
}

#[test]
fn a_url_is_a_link_to_a_stored_image_for_an_hour() {
    let host = host();
    let body = generate(
        &host,
        json!({"model": MODEL, "prompt": "p", "n": 2, "response_format": "url", "output_format": "webp", "seed": 8}),
    )
    .unwrap();
    let links = host.store().links();
    assert_eq!(links.len(), 2);
    let now = cinder_sdk::unix_time();
    for (i, (blob, mime, expires)) in links.iter().enumerate() {
        assert_eq!(mime, "image/webp");
        assert!((now + 3590..=now + 3610).contains(expires), "{expires}");
        assert_eq!(
            body["data"][i]["url"],
            format!("http://fake.test/links/{blob}")
        );
        assert!(body["data"][i].get("b64_json").is_none());
        let stored = host.store().blob(blob).unwrap();
        let mut webp = image_webp::WebPDecoder::new(std::io::Cursor::new(&stored)).unwrap();
        let mut rgb = vec![0; webp.output_buffer_size().unwrap()];
        webp.read_image(&mut rgb).unwrap();
        assert_eq!(rgb, fake_picture(64, 64, 8 + i as u64).rgb);
    }
    let host = self::host().with_setting("url_expires_secs", "60");
    generate(
        &host,
        json!({"model": MODEL, "prompt": "p", "response_format": "url"}),
    )
    .unwrap();
    let (_, mime, expires) = &host.store().links()[0];
    assert_eq!(mime, "image/png");
    assert!(*expires <= cinder_sdk::unix_time() + 60);
}

#[test]
fn quality_picks_the_steps_and_steps_overrides_it() {
    assert_eq!(steps_for(Quality::High, 20), 20);
    assert_eq!(steps_for(Quality::Auto, 20), 20);
    assert_eq!(steps_for(Quality::Medium, 20), 15);
    assert_eq!(steps_for(Quality::Standard, 20), 15);
    assert_eq!(steps_for(Quality::Low, 20), 10);
    assert_eq!(steps_for(Quality::Low, 1), 1);
    let host = host();
    generate(
        &host,
        json!({"model": MODEL, "prompt": "p", "quality": "low"}),
    )
    .unwrap();
    generate(&host, json!({"model": MODEL, "prompt": "p", "steps": 9})).unwrap();
    let steps: Vec<u32> = host.image_requests().iter().map(|r| r.steps).collect();
    assert_eq!(steps, [2, 9]);
}

#[test]
fn streaming_sends_partial_images_then_the_completed_image() {
    let host = host();
    let events = stream(
        &host,
        json!({"model": MODEL, "prompt": "a b", "stream": true, "partial_images": 2, "seed": 5, "steps": 6}),
    );
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "image_generation.partial_image",
            "image_generation.partial_image",
            "image_generation.completed"
        ]
    );
    for (i, (_, e)) in events[..2].iter().enumerate() {
        assert_eq!(e["type"], "image_generation.partial_image");
        assert_eq!(e["partial_image_index"], i);
        assert_eq!(decode_png(&bytes(&e["b64_json"])).0, 64);
    }
    let done = &events[2].1;
    assert_eq!(done["type"], "image_generation.completed");
    assert_eq!(
        decode_png(&bytes(&done["b64_json"])).2,
        fake_picture(64, 64, 5).rgb
    );
    assert_eq!(done["usage"]["input_tokens"], 4);
    assert_eq!(done["size"], "64x64");
}

#[test]
fn a_model_the_host_lacks_and_the_default_model_setting() {
    let host = host();
    assert_eq!(
        param(generate(&host, json!({"prompt": "p"})).unwrap_err()),
        "model"
    );
    let host = host.with_setting("default_model", MODEL);
    generate(&host, json!({"prompt": "p"})).unwrap();
    assert_eq!(host.image_requests()[0].model, MODEL);
}

#[test]
fn bad_input_is_refused_by_name() {
    let host = host();
    let cases = [
        (json!({"model": MODEL, "prompt": ""}), "prompt"),
        (json!({"model": MODEL}), "prompt"),
        (json!({"model": MODEL, "prompt": 5}), "prompt"),
        (json!({"model": MODEL, "prompt": "p", "n": 0}), "n"),
        (json!({"model": MODEL, "prompt": "p", "n": 11}), "n"),
        (
            json!({"model": MODEL, "prompt": "p", "size": "1024x1024"}),
            "size",
        ),
        (
            json!({"model": MODEL, "prompt": "p", "size": "big"}),
            "size",
        ),
        (
            json!({"model": MODEL, "prompt": "p", "quality": "ultra"}),
            "quality",
        ),
        (
            json!({"model": MODEL, "prompt": "p", "response_format": "gif"}),
            "response_format",
        ),
        (
            json!({"model": MODEL, "prompt": "p", "output_format": "gif"}),
            "output_format",
        ),
        (
            json!({"model": MODEL, "prompt": "p", "output_compression": 50}),
            "output_compression",
        ),
        (
            json!({"model": MODEL, "prompt": "p", "output_format": "jpeg", "output_compression": 101}),
            "output_compression",
        ),
        (
            json!({"model": MODEL, "prompt": "p", "background": "transparent"}),
            "background",
        ),
        (
            json!({"model": MODEL, "prompt": "p", "background": "pink"}),
            "background",
        ),
        (
            json!({"model": MODEL, "prompt": "p", "moderation": "none"}),
            "moderation",
        ),
        (
            json!({"model": MODEL, "prompt": "p", "style": "vivid"}),
            "style",
        ),
        (
            json!({"model": MODEL, "prompt": "p", "partial_images": 4, "stream": true}),
            "partial_images",
        ),
        (
            json!({"model": MODEL, "prompt": "p", "stream": true, "response_format": "url"}),
            "response_format",
        ),
        (json!({"model": MODEL, "prompt": "p", "seed": -1}), "seed"),
        (json!({"model": MODEL, "prompt": "p", "steps": 0}), "steps"),
        (json!({"model": MODEL, "prompt": "p", "steps": 51}), "steps"),
        (json!({"model": "", "prompt": "p"}), "model"),
        (json!({"model": "nope", "prompt": "p"}), "model"),
    ];
    for (body, want) in cases {
        let e = generate(&host, body.clone()).expect_err(&body.to_string());
        assert_eq!(param(e), want, "{body}");
    }
    assert!(
        host.image_requests().is_empty(),
        "nothing reached the model"
    );
    generate(&host, json!({"model": MODEL, "prompt": "p", "moderation": "low", "user": "u", "background": "opaque"})).unwrap();
}
