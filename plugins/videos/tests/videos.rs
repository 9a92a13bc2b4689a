//! The videos plugin against the SDK's fake host: a video made by its job a second at a time
//! (keyframes asked of the image model with their seeds, the MP4's frames counted in its
//! sample table), progress that only grows, the same seed making the same file, remix and
//! input_reference starting from their pictures, a delete or a crash half way, and bad input
//! refused by name.

// Test code: a panic here is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use cinder_pictures::{decode, encode};
use cinder_plugin_videos::FirstParty;
use cinder_sdk::openai::params::images::OutputFormat;
use cinder_sdk::testing::{FakeHost, FakeJobs, FakeStore, image_model, request};
use cinder_sdk::{Error, Outcome, Request, Route, ServeAgent};
use serde_json::{Value, json};

const MODEL: &str = "sora-2";

struct World {
    store: FakeStore,
    jobs: FakeJobs,
}

impl World {
    fn new() -> Self {
        World {
            store: FakeStore::default(),
            jobs: FakeJobs::default(),
        }
    }

    fn host(&self) -> FakeHost {
        FakeHost::new("chat")
            .with_image_model(image_model(MODEL, &[(32, 32), (64, 48), (2048, 2048)]))
            .with_store(self.store.clone())
            .with_jobs(self.jobs.clone())
            .with_setting("fps", "4")
            .with_setting("keyframes_per_second", "2")
    }

    fn call_on(&self, host: &FakeHost, route: Route, req: Request) -> Result<Value, Error> {
        FirstParty
            .serve(&route, req, host)
            .map(|()| host.take_response().map(|r| r.1).unwrap_or(Value::Null))
    }

    fn call(&self, route: Route, req: Request) -> Result<Value, Error> {
        self.call_on(&self.host(), route, req)
    }

    fn create(&self, body: Value) -> Result<Value, Error> {
        self.call(
            Route::new("videos.create"),
            request("POST", "/v1/videos", &body),
        )
    }

    fn get(&self, id: &str) -> Value {
        self.call(
            Route::new("videos.retrieve").with_param("video_id", id),
            request("GET", &format!("/v1/videos/{id}"), &Value::Null),
        )
        .unwrap()
    }

    /// Runs the video's job to its end; the host it ran on.
    fn run(&self, id: &str) -> FakeHost {
        let host = self.host();
        self.jobs.run_agent(id, &FirstParty, &host, 100).unwrap();
        host
    }

    /// The bytes `GET .../content?variant=` sends.
    fn content(&self, id: &str, variant: &str) -> Result<(String, Vec<u8>), Error> {
        let host = self.host();
        FirstParty.serve(
            &Route::new("videos.content").with_param("video_id", id),
            request(
                "GET",
                &format!("/v1/videos/{id}/content?variant={variant}"),
                &Value::Null,
            ),
            &host,
        )?;
        let (blob, content_type) = host.store().sent_blob().expect("a blob sent");
        Ok((content_type, self.store.blob(&blob).expect("the blob")))
    }
}

fn param(e: Error) -> String {
    match e {
        Error::InvalidRequest(d) | Error::NotFound(d) => d.param.unwrap_or_default(),
        other => panic!("not a 400 or 404: {other:?}"),
    }
}

/// The sample count of an MP4's `stsz` box: its frames.
fn mp4_frames(mp4: &[u8]) -> u32 {
    let at = mp4
        .windows(4)
        .position(|w| w == b"stsz")
        .expect("a sample size box");
    // type, version and flags, sample size, then the count.
    u32::from_be_bytes(mp4[at + 12..at + 16].try_into().unwrap())
}

#[test]
fn a_video_is_made_a_second_at_a_time_into_an_mp4() {
    let w = World::new();
    let v = w
        .create(json!({"prompt": "a red fox", "seconds": "4", "size": "64x48", "seed": 7}))
        .unwrap();
    assert_eq!(v["object"], "video");
    assert_eq!(v["status"], "queued");
    assert_eq!(
        (v["progress"].as_u64(), v["seconds"].as_str()),
        (Some(0), Some("4"))
    );
    assert_eq!(
        (v["size"].as_str(), v["model"].as_str()),
        (Some("64x48"), Some(MODEL))
    );
    let id = v["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("video_"));

    // Step by step: in progress, progress only growing, then completed at 100.
    let host = w.host();
    let mut seen = vec![0];
    loop {
        let out = w.jobs.run_agent(&id, &FirstParty, &host, 1).unwrap();
        let now = w.get(&id);
        seen.push(now["progress"].as_u64().unwrap());
        if out == [Outcome::Done] {
            assert_eq!(now["status"], "completed");
            assert!(now["completed_at"].as_u64().is_some());
            break;
        }
        assert_eq!(now["status"], "in_progress");
    }
    assert!(seen.windows(2).all(|p| p[0] <= p[1]), "{seen:?}");
    assert_eq!(seen.last(), Some(&100));
    assert_eq!(
        seen.len(),
        4 + 2,
        "a step per second and one to finish: {seen:?}"
    );

    // Keyframes: 2 a second and one to end on, seeds seed + k, each after the first an
    // image-to-image step from the one before.
    let asked = host.image_requests();
    assert_eq!(asked.len(), 9);
    assert_eq!(
        asked.iter().map(|r| r.seed).collect::<Vec<_>>(),
        (7..16).collect::<Vec<_>>()
    );
    let sources = host.image_sources();
    assert_eq!(sources.len(), 8);
    assert!(
        sources
            .iter()
            .all(|s| (s.strength - 0.45).abs() < 1e-6 && s.mask.is_none())
    );

    let (kind, mp4) = w.content(&id, "video").unwrap();
    assert_eq!(kind, "video/mp4");
    assert_eq!(&mp4[4..8], b"ftyp");
    assert!(mp4.windows(4).any(|b| b == b"av01"));
    assert_eq!(mp4_frames(&mp4), 16, "4 seconds at 4 fps");
    let (kind, thumb) = w.content(&id, "thumbnail").unwrap();
    assert_eq!(kind, "image/webp");
    let t = decode(&thumb, "t").unwrap();
    assert_eq!((t.width, t.height), (64, 48));
    // The first frame is keyframe 0 itself (lossless).
    assert_eq!(
        t.rgb,
        cinder_sdk::testing::fake_picture(64, 48, 7).rgb,
        "the thumbnail is the first keyframe"
    );
    let (kind, sheet) = w.content(&id, "spritesheet").unwrap();
    assert_eq!(kind, "image/jpeg");
    let s = decode(&sheet, "s").unwrap();
    assert_eq!((s.width, s.height), (64 * 4, 48), "four tiles in a row");
    // Only the three files are left: every second's blob and keyframe are removed.
    assert_eq!(w.store.blob_count(), 3);
}

#[test]
fn the_same_seed_makes_the_same_video() {
    let make = || {
        let w = World::new();
        let v = w
            .create(json!({"prompt": "waves", "size": "32x32", "seed": 3}))
            .unwrap();
        let id = v["id"].as_str().unwrap().to_owned();
        w.run(&id);
        w.content(&id, "video").unwrap().1
    };
    assert_eq!(make(), make());
}

#[test]
fn list_retrieve_and_delete_as_openai() {
    let w = World::new();
    let a = w.create(json!({"prompt": "one", "size": "32x32"})).unwrap();
    let b = w.create(json!({"prompt": "two", "size": "32x32"})).unwrap();
    let list = w
        .call(
            Route::new("videos.list"),
            request("GET", "/v1/videos?limit=1", &Value::Null),
        )
        .unwrap();
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["id"], b["id"], "newest first");
    assert_eq!(list["has_more"], true);
    let id = a["id"].as_str().unwrap();
    let gone = w
        .call(
            Route::new("videos.delete").with_param("video_id", id),
            request("DELETE", &format!("/v1/videos/{id}"), &Value::Null),
        )
        .unwrap();
    assert_eq!(
        gone,
        json!({"id": id, "object": "video.deleted", "deleted": true})
    );
    let missing = w
        .call(
            Route::new("videos.retrieve").with_param("video_id", id),
            request("GET", "/", &Value::Null),
        )
        .unwrap_err();
    assert!(matches!(missing, Error::NotFound(_)));
    // Its job finds nothing to do.
    assert_eq!(
        w.jobs.run_agent(id, &FirstParty, &w.host(), 5).unwrap(),
        [Outcome::Done]
    );
}

#[test]
fn a_video_deleted_half_way_leaves_no_file_behind() {
    let w = World::new();
    let v = w
        .create(json!({"prompt": "rain", "seconds": 8, "size": "32x32"}))
        .unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    w.jobs.run_agent(&id, &FirstParty, &w.host(), 2).unwrap();
    assert!(w.store.blob_count() > 0);
    w.call(
        Route::new("videos.delete").with_param("video_id", &id),
        request("DELETE", "/", &Value::Null),
    )
    .unwrap();
    assert_eq!(w.store.blob_count(), 0);
    assert!(w.jobs.job(&id).unwrap().job.cancel_requested);
    w.jobs.run_agent(&id, &FirstParty, &w.host(), 5).unwrap();
    assert_eq!(w.store.blob_count(), 0);
}

#[test]
fn a_restart_resumes_and_a_job_the_host_ends_fails_with_its_reason() {
    let w = World::new();
    let v = w
        .create(json!({"prompt": "snow", "size": "32x32", "seed": 1}))
        .unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    w.jobs.run_agent(&id, &FirstParty, &w.host(), 2).unwrap();
    let before = w.get(&id)["progress"].as_u64().unwrap();
    // A restart: the next process takes the job up from the video's record.
    w.jobs.update(&id, |j| j.job.attempt = 2);
    w.run(&id);
    let done = w.get(&id);
    assert_eq!(done["status"], "completed");
    assert!(before > 0 && before < 100);
    // The same video made without the restart is the same file.
    let once = World::new();
    let v2 = once
        .create(json!({"prompt": "snow", "size": "32x32", "seed": 1}))
        .unwrap();
    let id2 = v2["id"].as_str().unwrap().to_owned();
    once.run(&id2);
    assert_eq!(
        w.content(&id, "video").unwrap().1,
        once.content(&id2, "video").unwrap().1
    );

    let v = w
        .create(json!({"prompt": "hail", "size": "32x32"}))
        .unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    w.jobs.run_agent(&id, &FirstParty, &w.host(), 1).unwrap();
    let blobs = w.store.blob_count();
    w.jobs.update(&id, |j| {
        j.job.ending = Some("the job was taken up 3 times".into())
    });
    w.run(&id);
    let failed = w.get(&id);
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "video_generation_failed");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("3 times")
    );
    assert!(
        w.store.blob_count() < blobs,
        "a failed video keeps no files"
    );
    let e = w.content(&id, "video").unwrap_err();
    assert_eq!(param(e), "video_id");
}

#[test]
fn remix_starts_from_the_first_frame_of_its_source() {
    let w = World::new();
    let v = w
        .create(json!({"prompt": "a cat", "size": "32x32", "seed": 11}))
        .unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    // Not before it is completed.
    let early = w
        .call(
            Route::new("videos.remix").with_param("video_id", &id),
            request("POST", "/", &json!({"prompt": "a dog"})),
        )
        .unwrap_err();
    assert_eq!(param(early), "video_id");
    w.run(&id);
    let r = w
        .call(
            Route::new("videos.remix").with_param("video_id", &id),
            request("POST", "/", &json!({"prompt": "a dog"})),
        )
        .unwrap();
    assert_eq!(r["remixed_from_video_id"], id.as_str());
    assert_eq!(
        (r["prompt"].as_str(), r["size"].as_str()),
        (Some("a dog"), Some("32x32"))
    );
    let rid = r["id"].as_str().unwrap().to_owned();
    let host = w.run(&rid);
    assert_eq!(w.get(&rid)["status"], "completed");
    let first = &host.image_sources()[0];
    assert_eq!(
        first.picture.rgb,
        cinder_sdk::testing::fake_picture(32, 32, 11).rgb
    );
    assert!((first.strength - 0.6).abs() < 1e-6);
    assert_eq!(host.image_requests()[0].prompt, "a dog");
    for (body, p) in [
        (json!({}), "prompt"),
        (json!({"prompt": " "}), "prompt"),
        (json!({"prompt": "x", "seconds": 8}), "seconds"),
    ] {
        let e = w
            .call(
                Route::new("videos.remix").with_param("video_id", &id),
                request("POST", "/", &body),
            )
            .unwrap_err();
        assert_eq!(param(e), p, "{body}");
    }
}

#[test]
fn an_input_reference_is_where_the_first_keyframe_starts() {
    let w = World::new();
    let picture: Vec<u8> = (0..40 * 30 * 3).map(|i| (i % 251) as u8).collect();
    let png = encode(&picture, 40, 30, OutputFormat::Png, None).unwrap();
    let host = w.host().with_form(&[
        ("prompt", None, b"a lighthouse"),
        ("seconds", None, b"4"),
        ("size", None, b"32x32"),
        ("seed", None, b"5"),
        ("input_reference", Some("ref.png"), &png),
    ]);
    let form = Request {
        method: "POST".into(),
        path: "/v1/videos".into(),
        body: String::new(),
        request_id: "r".into(),
    };
    let v = w.call_on(&host, Route::new("videos.create"), form).unwrap();
    let id = v["id"].as_str().unwrap().to_owned();
    let ran = w.run(&id);
    let first = &ran.image_sources()[0];
    assert_eq!((first.picture.width, first.picture.height), (40, 30));
    assert_eq!(first.picture.rgb, picture);
    // As JSON: an uploaded file's id, or a data URL.
    let file = w.host().add_file("ref.png", &png);
    let v = w
        .create(json!({"prompt": "p", "size": "32x32", "input_reference": {"file_id": file}}))
        .unwrap();
    assert_eq!(v["status"], "queued");
    use base64::Engine as _;
    let url = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&png)
    );
    assert!(
        w.create(json!({"prompt": "p", "size": "32x32", "input_reference": {"image_url": url}}))
            .is_ok()
    );
}

#[test]
fn bad_requests_are_refused_by_name() {
    let w = World::new();
    for (body, p) in [
        (json!({}), "prompt"),
        (json!({"prompt": ""}), "prompt"),
        (json!({"prompt": "p", "seconds": "5"}), "seconds"),
        (json!({"prompt": "p", "size": "720x1280"}), "size"),
        // A size the model makes, but too large for a video.
        (json!({"prompt": "p", "size": "2048x2048"}), "size"),
        (json!({"prompt": "p", "model": "no-such"}), "model"),
        (json!({"prompt": "p", "seed": -3}), "seed"),
        (
            json!({"prompt": "p", "input_reference": "x.png"}),
            "input_reference",
        ),
        (
            json!({"prompt": "p", "input_reference": {"image_url": "https://x/y.png"}}),
            "input_reference",
        ),
        (
            json!({"prompt": "p", "input_reference": {"image_url": "data:image/png;base64,AAAA"}}),
            "input_reference",
        ),
        (
            json!({"prompt": "p", "input_reference": {"file_id": "file-nope"}}),
            "input_reference.file_id",
        ),
        (
            json!({"prompt": "p", "input_reference": {"url": "x"}}),
            "input_reference.url",
        ),
    ] {
        let e = w.create(body.clone()).expect_err("refused");
        assert_eq!(param(e), p, "{body}");
    }
    assert_eq!(
        w.store.objects("videos").len(),
        0,
        "nothing stored for a bad request"
    );
    assert_eq!(w.store.blob_count(), 0);
    // A form whose reference is not an image.
    let host = w.host().with_form(&[
        ("prompt", None, b"p"),
        ("input_reference", Some("ref.png"), b"not an image"),
    ]);
    let form = Request {
        method: "POST".into(),
        path: "/v1/videos".into(),
        body: String::new(),
        request_id: "r".into(),
    };
    let e = w
        .call_on(&host, Route::new("videos.create"), form)
        .unwrap_err();
    assert_eq!(param(e), "input_reference");
    let v = w.create(json!({"prompt": "p", "size": "32x32"})).unwrap();
    let id = v["id"].as_str().unwrap();
    assert_eq!(param(w.content(id, "video").unwrap_err()), "video_id");
    assert_eq!(param(w.content(id, "gif").unwrap_err()), "variant");
}
