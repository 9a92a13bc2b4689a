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
    let (config, _) = tiny_config();
    let mut t = Trainer::new(config, &schedule(), TrainSettings::default(), seed).expect("trainer");
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
    trainer.save(&dir, &json).expect("saves");
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
    let _ = std::fs::remove_dir_all(&dir);
}
