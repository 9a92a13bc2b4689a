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
