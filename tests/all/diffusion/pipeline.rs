//! The whole pipeline: diffusers' images from diffusers' noise with every scheduler, seeds,
//! limits, and what loads from folders shaped like real checkpoints.

use super::*;

fn pipeline() -> Pipeline {
    Pipeline::load(&fixture().join("pipeline"), BackendPreference::Flex)
        .expect("loads")
        .0
}

fn request(seed: u64) -> ImageRequest {
    ImageRequest {
        prompt: index()["prompts"]["cat"]
            .as_str()
            .expect("prompt")
            .to_owned(),
        negative_prompt: String::new(),
        width: 64,
        height: 64,
        steps: 4,
        guidance: 7.5,
        seed,
        scheduler: None,
        fast_decode: false,
        source: None,
    }
}

#[test]
fn the_pipeline_makes_diffusers_images_from_the_same_noise() {
    let pipe = pipeline();
    assert_eq!(pipe.scheduler_kind(), SchedulerKind::Euler);
    assert_eq!((pipe.pixels_per_latent(), pipe.size_multiple()), (2, 4));
    let (initial, dims) = floats("inputs.safetensors", "latents");
    let dims: [usize; 4] = dims.try_into().expect("4 dims");
    for name in ["euler", "euler_a", "ddim", "dpmpp_2m", "lcm"] {
        // Each scheduler with the config diffusers used for it (its own defaults filled in).
        let sched = &index()["schedulers"][name];
        let kind =
            SchedulerKind::from_class(sched["class"].as_str().expect("class")).expect("known");
        let config: SchedulerConfig =
            serde_json::from_value(sched["config"].clone()).expect("config");
        let scheduler = Scheduler::new(kind, &config, 4).expect("scheduler");
        let file = format!("pipe_{name}.safetensors");
        let noise = reference_exists(&file, "step_noise").then(|| floats(&file, "step_noise").0);
        let mut drawn = 0;
        let mut step_noise = |n: usize| {
            let all = noise.as_ref()?;
            let rows = all.len() / n;
            let row = (drawn < rows).then(|| all[drawn * n..(drawn + 1) * n].to_vec());
            drawn += 1;
            row
        };
        let mut seen = Vec::new();
        let latents = pipe
            .denoise(
                &request(0),
                scheduler,
                dims,
                initial.clone(),
                &mut step_noise,
                &mut |step| {
                    seen.push((step.done, step.of));
                    true
                },
            )
            .expect("denoises");
        assert_eq!(seen, [(1, 4), (2, 4), (3, 4), (4, 4)]);
        let (want, _) = floats(&file, "final_latents");
        let d = relative_delta(&latents, &want);
        assert!(d <= LATENT_RELATIVE, "{name}: final latents {d}");
        let picture = pipe.decode(&latents, dims, false).expect("decodes");
        assert_eq!((picture.width, picture.height), (64, 64));
        let (want_u8, _) = reference(&file, "image_u8");
        let off = picture
            .rgb
            .iter()
            .zip(&want_u8)
            .map(|(a, b)| a.abs_diff(*b))
            .max();
        assert!(off <= Some(1), "{name}: pixels differ by {off:?}");
    }
}

#[test]
fn a_seed_gives_its_image_and_bad_requests_are_refused() {
    let pipe = pipeline();
    let one = pipe
        .generate(&request(7), &mut |_| true)
        .expect("generates");
    assert_eq!(one.rgb.len(), 64 * 64 * 3);
    assert_eq!(
        pipe.generate(&request(7), &mut |_| true).expect("again"),
        one
    );
    assert_ne!(
        pipe.generate(&request(8), &mut |_| true).expect("another"),
        one
    );
    let wide = ImageRequest {
        width: 96,
        guidance: 1.0,
        ..request(7)
    };
    let p = pipe.generate(&wide, &mut |_| true).expect("unguided, wide");
    assert_eq!((p.width, p.height), (96, 64));
    // Stopped after its second step.
    let e = pipe
        .generate(&request(7), &mut |step| step.done < 2)
        .unwrap_err();
    assert!(matches!(e, CoreError::Cancelled), "{e:?}");
    for bad in [
        ImageRequest {
            width: 63,
            ..request(1)
        },
        ImageRequest {
            height: 4096,
            ..request(1)
        },
        ImageRequest {
            steps: 0,
            ..request(1)
        },
        ImageRequest {
            guidance: f32::NAN,
            ..request(1)
        },
        ImageRequest {
            fast_decode: true,
            ..request(1)
        },
    ] {
        let e = pipe.generate(&bad, &mut |_| true).unwrap_err();
        assert!(e.is_callers(), "{bad:?}: {e:?}");
    }
}

#[test]
fn image_limits_name_their_setting() {
    let pipe = pipeline();
    // The fixture's native side is 64 px: at most four times its area.
    let big = ImageRequest {
        width: 256,
        height: 128,
        ..request(1)
    };
    assert!(matches!(
        pipe.check(&big),
        Err(CoreError::ImageSize {
            max_pixels: 16_384,
            ..
        })
    ));
    let square = ImageRequest {
        width: 128,
        height: 128,
        ..request(1)
    };
    assert!(pipe.check(&square).is_ok());
    let lcm = ImageRequest {
        scheduler: Some(SchedulerKind::Lcm),
        steps: 51,
        ..request(1)
    };
    for (bad, want) in [
        (lcm, "steps"),
        (
            ImageRequest {
                steps: 201,
                ..request(1)
            },
            "steps",
        ),
        (
            ImageRequest {
                guidance: -1.0,
                ..request(1)
            },
            "guidance",
        ),
        (
            ImageRequest {
                fast_decode: true,
                ..request(1)
            },
            "decoder",
        ),
    ] {
        match pipe.check(&bad) {
            Err(CoreError::ImageSetting { param, .. }) => assert_eq!(param, want, "{bad:?}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn a_tokenizer_from_vocab_and_merges_alone_gives_the_same_ids() {
    // SD 1.x checkpoints ship CLIP's vocab.json and merges.txt without tokenizer.json, and
    // their tokenizer_config.json writes tokens as AddedToken objects.
    let dir = std::env::temp_dir().join(format!("cinder-clip-vocab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let from = fixture().join("pipeline/tokenizer");
    for f in ["vocab.json", "merges.txt"] {
        std::fs::copy(from.join(f), dir.join(f)).expect("copies");
    }
    let config = serde_json::json!({
        "model_max_length": 77,
        "eos_token": {"content": "<|endoftext|>", "lstrip": false, "__type": "AddedToken"},
        "pad_token": "<|endoftext|>",
    });
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).expect("writes");
    let tokenizer = ClipTokenizer::load(&dir).expect("loads from vocab and merges");
    assert_same_ids(&tokenizer);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_pipeline_naming_a_scheduler_not_built_runs_euler() {
    let dir = std::env::temp_dir().join(format!("cinder-sd-pndm-{}", std::process::id()));
    let from = fixture().join("pipeline");
    for part in ["text_encoder", "tokenizer", "unet", "vae", "scheduler"] {
        std::fs::create_dir_all(dir.join(part)).expect("temp dir");
        for entry in std::fs::read_dir(from.join(part)).expect("lists") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), dir.join(part).join(entry.file_name())).expect("copies");
        }
    }
    let index = std::fs::read_to_string(from.join("model_index.json")).expect("reads");
    let index = index.replace("EulerDiscreteScheduler", "PNDMScheduler");
    std::fs::write(dir.join("model_index.json"), index).expect("writes");
    let (pipe, _) = Pipeline::load(&dir, BackendPreference::Flex).expect("loads");
    assert_eq!(pipe.scheduler_kind(), SchedulerKind::Euler);
    std::fs::remove_dir_all(&dir).ok();
}
