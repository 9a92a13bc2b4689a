//! Images from an image: the VAE's encoder against diffusers, and edits (a mask keeps every
//! pixel it closes, to the byte) and variations (strength picks how much of the schedule
//! runs) on the tiny pipeline.

use super::*;

fn encoder_golden(pref: BackendPreference) {
    let (encoder, kind) = VaeEncoder::load(&fixture().join("pipeline/vae"), pref).expect("loads");
    let (image, dims) = floats("inputs.safetensors", "image");
    let (mean, logvar, shape) = encoder
        .encode_values(&image, dims.try_into().expect("4 dims"))
        .expect("encodes");
    assert_eq!(shape, [1, 4, 32, 32]);
    let (want_mean, _) = floats("vae.safetensors", "encode.mean");
    let (want_logvar, _) = floats("vae.safetensors", "encode.logvar");
    let (dm, dl) = (
        max_delta(&mean, &want_mean),
        max_delta(&logvar, &want_logvar),
    );
    eprintln!(
        "{} vae encoder: max |Δ| mean {dm:.2e}, logvar {dl:.2e}",
        kind.name()
    );
    assert!(dm <= 1e-3 && dl <= 1e-3, "mean {dm}, logvar {dl}");
    assert!(encoder.encode_values(&image, [1, 3, 63, 65]).is_err());
}

#[test]
fn the_vae_encoder_matches_diffusers_on_burns_cpu_backend() {
    encoder_golden(BackendPreference::Flex);
}

#[test]
fn the_vae_encoder_matches_diffusers_on_wgpu() {
    encoder_golden(BackendPreference::Wgpu);
}

fn pipeline() -> Pipeline {
    Pipeline::load(&fixture().join("pipeline"), BackendPreference::Flex)
        .expect("loads")
        .0
}

/// A 48x40 source: a gradient with a dark bar, so resizing has something to keep.
fn source(mask: Option<Vec<u8>>, strength: f32) -> SourceImage {
    let (w, h) = (48, 40);
    let rgb = (0..w * h)
        .flat_map(|i| {
            let (x, y) = (i % w, i / w);
            let bar = (18..30).contains(&x);
            let v = |k: usize| if bar { 20 } else { (k * 255 / w) as u8 };
            [v(x), v(y), 128]
        })
        .collect();
    SourceImage {
        width: w,
        height: h,
        rgb,
        mask,
        strength,
    }
}

fn request(source: SourceImage) -> ImageRequest {
    ImageRequest {
        prompt: "a red apple".into(),
        negative_prompt: String::new(),
        width: 64,
        height: 64,
        steps: 8,
        guidance: 7.5,
        seed: 3,
        scheduler: None,
        fast_decode: false,
        source: Some(source),
    }
}

#[test]
fn an_edit_changes_only_what_its_mask_opens() {
    let pipe = pipeline();
    // Open the middle of the 48x40 source (in the 64x64 output: x 16..48, y 16..48).
    let mask: Vec<u8> = (0..48 * 40)
        .map(|i| {
            let (x, y) = (i % 48, i / 48);
            if (12..36).contains(&x) && (10..30).contains(&y) {
                255
            } else {
                0
            }
        })
        .collect();
    let s = source(Some(mask), 1.0);
    let mut steps = Vec::new();
    let picture = pipe
        .generate(&request(s.clone()), &mut |step| {
            steps.push((step.done, step.of));
            true
        })
        .expect("an edit");
    assert_eq!(steps.last(), Some(&(8, 8)));
    assert_eq!((picture.width, picture.height), (64, 64));
    let src = cinder_core::resize_rgb(&s.rgb, 48, 40, 64, 64);
    let (mut kept, mut changed) = (0, 0);
    for y in 0..64 {
        for x in 0..64 {
            let at = (y * 64 + x) * 3;
            let inside = (16..48).contains(&x) && (16..48).contains(&y);
            let same = picture.rgb[at..at + 3] == src[at..at + 3];
            if !inside {
                assert!(same, "({x}, {y}) is outside the mask and changed");
                kept += 1;
            } else if !same {
                changed += 1;
            }
        }
    }
    assert!(
        kept > 0 && changed > 32 * 32 / 2,
        "{changed} of the opened pixels changed"
    );
    // The same seed makes the same edit.
    let again = pipe.generate(&request(s), &mut |_| true).expect("again");
    assert_eq!(again.rgb, picture.rgb);
}

#[test]
fn a_variations_strength_sets_how_much_of_the_schedule_runs() {
    let pipe = pipeline();
    let run = |strength: f32| {
        let mut last = (0, 0);
        let r = request(source(None, strength));
        assert_eq!(pipe.steps_run(&r), ((8.0 * strength) as usize).max(1));
        let picture = pipe
            .generate(&r, &mut |step| {
                last = (step.done, step.of);
                true
            })
            .expect("a variation");
        assert_eq!(last.0, last.1);
        (last.1, picture)
    };
    let (light_steps, light) = run(0.25);
    let (full_steps, full) = run(1.0);
    assert_eq!((light_steps, full_steps), (2, 8));
    assert_ne!(light.rgb, full.rgb);
    // Without a mask nothing is pasted back: the whole picture is the model's.
    let src = cinder_core::resize_rgb(&source(None, 1.0).rgb, 48, 40, 64, 64);
    assert_ne!(light.rgb, src);
}

#[test]
fn a_source_out_of_bounds_is_refused_by_name() {
    let pipe = pipeline();
    let mut huge = source(None, 0.5);
    huge.width = cinder_core::MAX_SOURCE_SIDE + 1;
    for (bad, want) in [
        (source(None, 0.0), "strength"),
        (source(None, 1.5), "strength"),
        (source(None, f32::NAN), "strength"),
        (source(Some(vec![255; 10]), 0.5), "mask"),
        (huge, "image"),
    ] {
        match pipe.check(&request(bad)) {
            Err(CoreError::ImageSetting { param, .. }) => assert_eq!(param, want),
            other => panic!("{want}: {other:?}"),
        }
    }
}

/// Image to image as diffusers runs it (reference/img2img.safetensors, make_img2img.py): the
/// source encoded to the distribution's mean, noised to the first step's level by each
/// scheduler's `add_noise`, then the remaining steps with guidance.
fn img2img_golden(name: &str, pref: BackendPreference) {
    let file = "img2img.safetensors";
    let (encoder, _) = VaeEncoder::load(&fixture().join("pipeline/vae"), pref).expect("encoder");
    let (src, _) = reference(file, "source_u8");
    let (h, w) = (64, 64);
    let mut values = vec![0f32; 3 * h * w];
    for (i, px) in src.chunks_exact(3).enumerate() {
        for c in 0..3 {
            values[c * h * w + i] = f32::from(px[c]) / 127.5 - 1.0;
        }
    }
    let (mean, _, dims) = encoder
        .encode_values(&values, [1, 3, h, w])
        .expect("encodes");
    let (unet, _) = UNet::load(&fixture().join("pipeline/unet"), pref).expect("unet");
    let (vae, _) = VaeDecoder::load(&fixture().join("pipeline/vae"), pref).expect("vae");
    let clean: Vec<f32> = mean
        .iter()
        .map(|v| v * vae.config().scaling_factor)
        .collect();
    let (want_clean, _) = floats(file, "clean");
    let d = relative_delta(&clean, &want_clean);
    assert!(d <= 1e-3, "{name}: clean latents {d}");

    let index = index();
    let sched = &index["schedulers"][name];
    let kind = SchedulerKind::from_class(sched["class"].as_str().expect("class")).expect("known");
    let config: SchedulerConfig = serde_json::from_value(sched["config"].clone()).expect("config");
    let steps = 4;
    let mut scheduler = Scheduler::new(kind, &config, steps).expect("scheduler");
    let (t_start, _) = reference(file, &format!("{name}.t_start"));
    let first = i64::from_le_bytes(t_start[..8].try_into().expect("8 bytes")) as usize;
    assert_eq!(
        first,
        cinder_core::first_step(steps, 0.5),
        "{name}: the first step"
    );
    let (noise, _) = floats("inputs.safetensors", "latents");
    let mut latents = scheduler.add_noise(&want_clean, &noise, first);
    let d = relative_delta(&latents, &floats(file, &format!("{name}.start")).0);
    assert!(d <= 1e-5, "{name}: noised start {d}");

    let (cond, cdims) = floats("text.safetensors", "cat.last_hidden_state");
    let (uncond, _) = floats("text.safetensors", "uncond.last_hidden_state");
    let context = [uncond, cond].concat();
    let per = latents.len();
    let timesteps = scheduler.timesteps();
    for (i, &t) in timesteps.iter().enumerate().skip(first) {
        let mut input = [latents.clone(), latents.clone()].concat();
        scheduler.scale_model_input(&mut input, i);
        let out = unet
            .predict(
                &input,
                [2, dims[1], dims[2], dims[3]],
                t,
                &context,
                [2, cdims[1], cdims[2]],
            )
            .expect("predicts");
        let guided: Vec<f32> = (0..per)
            .map(|k| out[k] + 7.5 * (out[per + k] - out[k]))
            .collect();
        latents = scheduler.step(&guided, i, &latents, None);
    }
    let d = relative_delta(&latents, &floats(file, &format!("{name}.final")).0);
    eprintln!("{name}: image to image final latents relative |Δ| {d:.2e}");
    assert!(d <= LATENT_RELATIVE, "{name}: final latents {d}");
}

#[test]
fn image_to_image_matches_diffusers_with_each_scheduler() {
    for name in ["euler", "ddim", "dpmpp_2m"] {
        img2img_golden(name, BackendPreference::Flex);
    }
}
