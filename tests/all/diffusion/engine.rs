//! An image model as requests use it: loaded with its sizes and defaults, jobs queued on its
//! thread with their events in order (steps, partial images, each image equal to the
//! pipeline's own for seed + i), a full queue refused, a dropped receiver stopping the work.

use std::time::{Duration, Instant};

use cinder_core::{ImageEvent, ImageJob, ImageSettings, LoadedImageModel, ModelSpec};

use super::*;

fn model(settings: ImageSettings) -> LoadedImageModel {
    LoadedImageModel::load(
        "sd-tiny",
        &fixture().join("pipeline"),
        BackendPreference::Flex,
        &settings,
        0,
    )
    .expect("loads")
}

fn job(seed: u64, count: usize, partial_images: usize, steps: usize) -> ImageJob {
    ImageJob {
        request: ImageRequest {
            prompt: "a cat".into(),
            negative_prompt: String::new(),
            width: 64,
            height: 64,
            steps,
            guidance: 7.5,
            seed,
            scheduler: None,
            fast_decode: false,
            source: None,
        },
        count,
        partial_images,
        background: false,
    }
}

#[test]
fn an_image_model_lists_its_sizes_and_makes_each_images_events_in_order() {
    let spec = ModelSpec {
        id: "sd-tiny".into(),
        path: fixture().join("pipeline"),
        backend: BackendPreference::Flex,
        threads: None,
        prefix_cache_mib: None,
        embeddings: false,
        raw_control_tokens: false,
        engine: Default::default(),
        q8_decode: false,
        q8_products: false,
        image: ImageSettings::default(),
    };
    assert!(spec.is_image() && !spec.is_embedder());
    let m = model(ImageSettings::default());
    assert_eq!(m.info.sizes, [(64, 64), (32, 32), (96, 64), (64, 96)]);
    assert_eq!((m.info.default_steps, m.info.guidance), (20, 7.5));
    assert_eq!(m.info.scheduler, SchedulerKind::Euler);

    let rx = m.submit(job(21, 2, 1, 4)).expect("queued");
    let events: Vec<ImageEvent> = std::iter::from_fn({
        let mut rx = rx;
        move || rx.blocking_recv()
    })
    .collect();
    let ImageEvent::Started { prompt_tokens } = events[0] else {
        panic!("{:?}", events[0])
    };
    assert_eq!(prompt_tokens, 4, "start, `a`, `cat`, end");
    let mut steps = Vec::new();
    let mut partials = Vec::new();
    let mut done = Vec::new();
    for e in &events[1..] {
        match e {
            ImageEvent::Step { image, done, of } => steps.push((*image, *done, *of)),
            ImageEvent::Partial {
                image,
                index,
                picture,
            } => partials.push((*image, *index, picture.width)),
            ImageEvent::Done { image, picture } => done.push((*image, picture.clone())),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(steps.len(), 8);
    assert_eq!(steps[..4], [(0, 1, 4), (0, 2, 4), (0, 3, 4), (0, 4, 4)]);
    assert_eq!(partials, [(0, 0, 64), (1, 0, 64)]);
    let pipe = Pipeline::load(&fixture().join("pipeline"), BackendPreference::Flex)
        .expect("loads")
        .0;
    for (i, (image, picture)) in done.iter().enumerate() {
        assert_eq!(*image, i);
        let mut alone = job(21 + i as u64, 1, 0, 4).request;
        alone.scheduler = Some(SchedulerKind::Euler);
        assert_eq!(
            *picture,
            pipe.generate(&alone, &mut |_| true).expect("same")
        );
    }
}

#[test]
fn a_background_job_makes_the_same_image_as_a_live_one() {
    let m = model(ImageSettings::default());
    let made = |background: bool| {
        let mut rx = m
            .submit(ImageJob {
                background,
                ..job(5, 1, 0, 3)
            })
            .expect("queued");
        let mut picture = None;
        while let Some(e) = rx.blocking_recv() {
            if let ImageEvent::Done { picture: p, .. } = e {
                picture = Some(p);
            }
        }
        picture.expect("an image")
    };
    // On the niced pool, pausing between blocks for live work (none here): the same bytes.
    assert_eq!(made(true), made(false));
}

#[test]
fn a_full_queue_is_busy_and_a_dropped_receiver_stops_the_work() {
    let m = model(ImageSettings {
        max_waiting: 0,
        ..ImageSettings::default()
    });
    let e = m
        .submit(ImageJob {
            request: ImageRequest {
                width: 128,
                ..job(1, 1, 0, 4).request
            },
            ..job(1, 1, 0, 4)
        })
        .unwrap_err();
    assert!(
        matches!(e, CoreError::ImageSetting { param: "size", .. }),
        "{e:?}"
    );
    let mut long = m.submit(job(1, 10, 0, 200)).expect("queued");
    assert!(matches!(
        long.blocking_recv(),
        Some(ImageEvent::Started { .. })
    ));
    let e = m.submit(job(2, 1, 0, 4)).unwrap_err();
    assert!(matches!(e, CoreError::Busy(_)), "{e:?}");
    for (bad, param) in [
        (job(1, 11, 0, 4), "count"),
        (job(1, 1, 4, 4), "partial-images"),
    ] {
        let e = m.submit(bad).unwrap_err();
        assert!(
            matches!(e, CoreError::ImageSetting { param: p, .. } if p == param),
            "{e:?}"
        );
    }
    drop(long);
    // The thread stops at the next step and takes the next job.
    let started = Instant::now();
    loop {
        match m.submit(job(3, 1, 0, 1)) {
            Ok(mut rx) => {
                while let Some(e) = rx.blocking_recv() {
                    if matches!(e, ImageEvent::Done { .. }) {
                        return;
                    }
                }
                panic!("the job ended without its image");
            }
            Err(CoreError::Busy(_)) if started.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[test]
fn an_euler_steps_estimate_at_the_last_step_is_the_final_latents() {
    let pipe = Pipeline::load(&fixture().join("pipeline"), BackendPreference::Flex)
        .expect("loads")
        .0;
    let r = job(4, 1, 0, 3).request;
    let scheduler = pipe.scheduler(SchedulerKind::Euler, 3).expect("scheduler");
    let dims = [1, 4, 32, 32];
    let initial: Vec<f32> = (0..4 * 32 * 32)
        .map(|i| ((i % 13) as f32 - 6.0) / 6.0)
        .collect();
    let mut last = Vec::new();
    let latents = pipe
        .denoise(&r, scheduler, dims, initial, &mut |_| None, &mut |step| {
            if step.done == step.of {
                last = step.estimate();
            }
            true
        })
        .expect("denoises");
    assert_eq!(last.len(), latents.len());
    assert!(max_delta(&last, &latents) < 1e-5);
}
