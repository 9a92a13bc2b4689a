//! The Stable Diffusion parts against diffusers on the tiny random-weight pipeline in
//! `tests/fixtures/sd-tiny` (made, with its reference outputs, by that folder's `make.py`
//! with diffusers and transformers; never edited by hand): the prompt tokenizer's ids, the
//! CLIP text encoder's last hidden state, the UNet's noise prediction (one prompt, and a
//! classifier-free-guidance batch) and the VAE decoder's image, on burn's CPU backend and on
//! wgpu (lavapipe here).

use std::path::PathBuf;

use cinder_core::{
    BackendPreference, ClipText, ClipTokenizer, CoreError, ImageRequest, Pipeline, Scheduler,
    SchedulerConfig, SchedulerKind, SourceImage, TinyDecoder, UNet, VaeDecoder, VaeEncoder,
};
use serde_json::Value;

/// Max |Δ| allowed on f32 hidden states (the fixture's README: 1e-3; the encoder does far
/// better, so the test holds it to that).
const HIDDEN_TOLERANCE: f32 = 1e-4;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/sd-tiny")
}

fn index() -> Value {
    let text = std::fs::read(fixture().join("reference/index.json")).expect("index.json");
    serde_json::from_slice(&text).expect("index.json parses")
}

/// A reference tensor's raw bytes and shape.
fn reference(file: &str, name: &str) -> (Vec<u8>, Vec<usize>) {
    let bytes = std::fs::read(fixture().join("reference").join(file)).expect("reference file");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let t = st.tensor(name).expect("reference tensor");
    (t.data().to_vec(), t.shape().to_vec())
}

fn floats(file: &str, name: &str) -> (Vec<f32>, Vec<usize>) {
    let (b, shape) = reference(file, name);
    let v = b
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (v, shape)
}

fn ids(file: &str, name: &str) -> Vec<u32> {
    let (b, _) = reference(file, name);
    b.chunks_exact(8)
        .map(|c| {
            let v = i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            u32::try_from(v).expect("a token id")
        })
        .collect()
}

fn max_delta(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "lengths");
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f32::max)
}

#[test]
fn the_prompt_tokenizer_gives_the_pipelines_ids() {
    let tokenizer = ClipTokenizer::load(&fixture().join("pipeline/tokenizer")).expect("loads");
    assert_eq!(tokenizer.length(), 77);
    assert_same_ids(&tokenizer);
}

/// `tokenizer` gives the pipeline's ids for every reference prompt.
fn assert_same_ids(tokenizer: &ClipTokenizer) {
    let prompts = index()["prompts"].as_object().expect("prompts").clone();
    assert!(prompts.len() >= 5);
    for (name, prompt) in prompts {
        let (got, cut) = tokenizer
            .encode(prompt.as_str().expect("text"))
            .expect("encodes");
        assert_eq!(
            got,
            ids("text.safetensors", &format!("{name}.input_ids")),
            "{name}"
        );
        // Only the long prompt is cut (and keeps its end token).
        assert_eq!(cut > 0, name == "long", "{name}: {cut} cut");
    }
}

fn text_encoder_golden(pref: BackendPreference) {
    let (encoder, kind) =
        ClipText::load(&fixture().join("pipeline/text_encoder"), pref).expect("loads");
    let names: Vec<String> = index()["prompts"]
        .as_object()
        .expect("prompts")
        .keys()
        .cloned()
        .collect();
    let batch: Vec<Vec<u32>> = names
        .iter()
        .map(|n| ids("text.safetensors", &format!("{n}.input_ids")))
        .collect();
    // The whole batch at once, and the first prompt alone: each row is what it is alone.
    let all = encoder.hidden_states(&batch).expect("encodes");
    let per = all.len() / batch.len();
    for (i, name) in names.iter().enumerate() {
        let (want, shape) = floats("text.safetensors", &format!("{name}.last_hidden_state"));
        assert_eq!(shape, [1, 77, encoder.hidden_size()]);
        let worst = max_delta(&all[i * per..(i + 1) * per], &want);
        eprintln!("{} {name}: max |Δ| {worst:.2e}", kind.name());
        assert!(worst <= HIDDEN_TOLERANCE, "{name}: max |Δ| {worst}");
    }
    let alone = encoder.hidden_states(&batch[..1]).expect("encodes");
    assert!(max_delta(&alone, &all[..per]) <= 1e-6);
    // Bad input is an error, not a panic.
    assert!(encoder.hidden_states(&[vec![5_000; 77]]).is_err());
    assert!(encoder.hidden_states(&[vec![1; 78]]).is_err());
    assert!(encoder.hidden_states(&[vec![1; 3], vec![1; 4]]).is_err());
}

#[test]
fn the_text_encoder_matches_transformers_on_burns_cpu_backend() {
    text_encoder_golden(BackendPreference::Flex);
}

#[test]
fn the_text_encoder_matches_transformers_on_wgpu() {
    text_encoder_golden(BackendPreference::Wgpu);
}

/// Max |Δ| allowed on the UNet's noise and the VAE's image (the fixture's README: 1e-3).
const OUTPUT_TOLERANCE: f32 = 1e-4;

fn unet_golden(pref: BackendPreference) {
    let (unet, kind) = UNet::load(&fixture().join("pipeline/unet"), pref).expect("loads");
    let (latents, dims) = floats("inputs.safetensors", "latents");
    let dims: [usize; 4] = dims.try_into().expect("4 dims");
    let (cond, cdims) = floats("text.safetensors", "cat.last_hidden_state");
    let (uncond, _) = floats("text.safetensors", "uncond.last_hidden_state");
    let cdims: [usize; 3] = cdims.try_into().expect("3 dims");
    for t in [981u32, 1] {
        let got = unet
            .predict(&latents, dims, t as f32, &cond, cdims)
            .expect("predicts");
        let (want, _) = floats("unet.safetensors", &format!("t{t}.cond"));
        let worst = max_delta(&got, &want);
        eprintln!("{} unet t{t}: max |Δ| {worst:.2e}", kind.name());
        assert!(worst <= OUTPUT_TOLERANCE, "t{t}: max |Δ| {worst}");
        // The guidance batch: unconditional and conditional rows together.
        let sample = [latents.clone(), latents.clone()].concat();
        let context = [uncond.clone(), cond.clone()].concat();
        let got = unet
            .predict(
                &sample,
                [2, dims[1], dims[2], dims[3]],
                t as f32,
                &context,
                [2, cdims[1], cdims[2]],
            )
            .expect("predicts");
        let (want, _) = floats("unet.safetensors", &format!("t{t}.batch2"));
        let worst = max_delta(&got, &want);
        assert!(worst <= OUTPUT_TOLERANCE, "t{t} batch: max |Δ| {worst}");
    }
    // Shapes that cannot be are errors, not panics.
    assert!(
        unet.predict(&latents, [1, 3, 32, 32], 1.0, &cond, cdims)
            .is_err()
    );
    assert!(
        unet.predict(&latents, [1, 4, 31, 33], 1.0, &cond, cdims)
            .is_err()
    );
    assert!(
        unet.predict(&latents, dims, 1.0, &cond, [1, 77, 5])
            .is_err()
    );
}

#[test]
fn the_unet_matches_diffusers_on_burns_cpu_backend() {
    unet_golden(BackendPreference::Flex);
}

#[test]
fn the_unet_matches_diffusers_on_wgpu() {
    unet_golden(BackendPreference::Wgpu);
}

fn vae_golden(pref: BackendPreference) {
    let (vae, kind) = VaeDecoder::load(&fixture().join("pipeline/vae"), pref).expect("loads");
    let (latents, dims) = floats("inputs.safetensors", "latents");
    let scaled: Vec<f32> = latents
        .iter()
        .map(|v| v / vae.config().scaling_factor)
        .collect();
    let (got, shape) = vae
        .decode_values(&scaled, dims.try_into().expect("4 dims"))
        .expect("decodes");
    assert_eq!(shape, [1, 3, 64, 64]);
    let (want, _) = floats("vae.safetensors", "decode.sample");
    let worst = max_delta(&got, &want);
    eprintln!("{} vae: max |Δ| {worst:.2e}", kind.name());
    assert!(worst <= OUTPUT_TOLERANCE, "vae: max |Δ| {worst}");
    // The pixels (NHWC bytes, as the pipeline's postprocess makes them) agree within one step.
    let (want_u8, _) = reference("vae.safetensors", "decode.image_u8");
    let (c, h, w) = (3, 64, 64);
    let mut off = 0u8;
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                let v = got[ch * h * w + y * w + x];
                let byte = ((v / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8;
                off = off.max(byte.abs_diff(want_u8[(y * w + x) * c + ch]));
            }
        }
    }
    assert!(off <= 1, "pixels differ by {off}");
    assert!(vae.decode_values(&scaled, [1, 3, 32, 32]).is_err());
}

#[test]
fn the_tiny_decoder_matches_diffusers() {
    for pref in [BackendPreference::Flex, BackendPreference::Wgpu] {
        let (taesd, kind) = TinyDecoder::load(&fixture().join("taesd"), pref).expect("loads");
        let (latents, dims) = floats("inputs.safetensors", "latents");
        let (got, shape) = taesd
            .decode_values(&latents, dims.try_into().expect("4 dims"))
            .expect("decodes");
        assert_eq!(shape, [1, 3, 64, 64]);
        let (want, _) = floats("taesd.safetensors", "decode.sample");
        let worst = max_delta(&got, &want);
        eprintln!("{} taesd: max |Δ| {worst:.2e}", kind.name());
        assert!(worst <= OUTPUT_TOLERANCE, "taesd: max |Δ| {worst}");
    }
}

#[test]
fn the_vae_decoder_matches_diffusers_on_burns_cpu_backend() {
    vae_golden(BackendPreference::Flex);
}

#[test]
fn the_vae_decoder_matches_diffusers_on_wgpu() {
    vae_golden(BackendPreference::Wgpu);
}

/// Max |Δ| relative to max(1, |reference|) on the pipelines' latents, which random weights
/// drive far from unit scale (the fixture's README).
const LATENT_RELATIVE: f32 = 1e-3;

fn relative_delta(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "lengths");
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .fold(0.0, f32::max)
}

/// Row `i` of a reference tensor whose first dimension counts steps.
fn row(values: &[f32], rows: usize, i: usize) -> &[f32] {
    let per = values.len() / rows;
    &values[i * per..(i + 1) * per]
}

/// The whole text-to-image loop, four steps with guidance 7.5, against the pipeline's own
/// intermediate values at every step and its final image.
fn pipeline_golden(name: &str, pref: BackendPreference) {
    let index = index();
    let sched = &index["schedulers"][name];
    let kind = SchedulerKind::from_class(sched["class"].as_str().expect("class")).expect("known");
    let config: SchedulerConfig = serde_json::from_value(sched["config"].clone()).expect("config");
    let file = format!("pipe_{name}.safetensors");
    let steps = 4;
    let mut scheduler = Scheduler::new(kind, &config, steps).expect("scheduler");
    let (want_t, _) = match name {
        "euler" | "euler_a" => floats(&file, "timesteps"),
        _ => {
            let (b, shape) = reference(&file, "timesteps");
            let v = b
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
                .collect();
            (v, shape)
        }
    };
    assert_eq!(scheduler.timesteps(), want_t, "{name}: timesteps");
    if ["euler", "euler_a", "dpmpp_2m"].contains(&name) {
        let (want, _) = floats(&file, "sigmas");
        assert!(
            relative_delta(&scheduler.sigmas(), &want) <= 1e-5,
            "{name}: sigmas"
        );
    }
    let (init, _) = floats(&file, "init_noise_sigma");
    assert!(
        (scheduler.init_noise_sigma() - init[0]).abs() <= 1e-5 * init[0],
        "{name}: init_noise_sigma {} against {}",
        scheduler.init_noise_sigma(),
        init[0]
    );

    let (unet, kind_name) = UNet::load(&fixture().join("pipeline/unet"), pref).expect("unet");
    let (vae, _) = VaeDecoder::load(&fixture().join("pipeline/vae"), pref).expect("vae");
    let (noise0, dims) = floats("inputs.safetensors", "latents");
    let (cond, cdims) = floats("text.safetensors", "cat.last_hidden_state");
    let (uncond, _) = floats("text.safetensors", "uncond.last_hidden_state");
    let context = [uncond, cond].concat();
    let (unet_in, _) = floats(&file, "unet_in");
    let (unet_out, _) = floats(&file, "unet_out");
    let (step_latents, _) = floats(&file, "step_latents");
    let step_noise = reference_exists(&file, "step_noise").then(|| floats(&file, "step_noise").0);
    let per = noise0.len();
    let mut latents: Vec<f32> = noise0
        .iter()
        .map(|v| v * scheduler.init_noise_sigma())
        .collect();
    let batch = [2, dims[1], dims[2], dims[3]];
    for (i, t) in scheduler.timesteps().into_iter().enumerate() {
        let mut input = [latents.clone(), latents.clone()].concat();
        scheduler.scale_model_input(&mut input, i);
        let d_in = relative_delta(&input, row(&unet_in, steps, i));
        assert!(
            d_in <= LATENT_RELATIVE,
            "{name} step {i}: UNet input {d_in}"
        );
        // Each step from diffusers' own input, so one step's error is not the next one's.
        let out = unet
            .predict(
                row(&unet_in, steps, i),
                batch,
                t,
                &context,
                [2, cdims[1], cdims[2]],
            )
            .expect("predicts");
        let d_out = relative_delta(&out, row(&unet_out, steps, i));
        assert!(
            d_out <= LATENT_RELATIVE,
            "{name} step {i}: UNet output {d_out}"
        );
        let guided: Vec<f32> = (0..per)
            .map(|k| out[k] + 7.5 * (out[per + k] - out[k]))
            .collect();
        let noise = step_noise.as_ref().and_then(|n| {
            let rows = n.len() / per;
            (i < rows).then(|| row(n, rows, i).to_vec())
        });
        latents = scheduler.step(&guided, i, &latents, noise.as_deref());
        let d = relative_delta(&latents, row(&step_latents, steps, i));
        eprintln!(
            "{} {name} step {i}: latents relative |Δ| {d:.2e}",
            kind_name.name()
        );
        assert!(d <= LATENT_RELATIVE, "{name} step {i}: latents {d}");
    }
    let (want_final, _) = floats(&file, "final_latents");
    assert!(relative_delta(&latents, &want_final) <= LATENT_RELATIVE);
    let scaled: Vec<f32> = want_final
        .iter()
        .map(|v| v / vae.config().scaling_factor)
        .collect();
    let (image, _) = vae
        .decode_values(&scaled, dims.clone().try_into().expect("4 dims"))
        .expect("decodes");
    let (want_u8, _) = reference(&file, "image_u8");
    let (c, h, w) = (3, 64, 64);
    let mut off = 0u8;
    for y in 0..h {
        for x in 0..w {
            for ch in 0..c {
                let v = image[ch * h * w + y * w + x];
                let byte = ((v / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8;
                off = off.max(byte.abs_diff(want_u8[(y * w + x) * c + ch]));
            }
        }
    }
    assert!(off <= 1, "{name}: pixels differ by {off}");
}

fn reference_exists(file: &str, name: &str) -> bool {
    let bytes = std::fs::read(fixture().join("reference").join(file)).expect("reference file");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    st.tensor(name).is_ok()
}

#[test]
fn the_schedulers_follow_diffusers_step_by_step() {
    for name in ["euler", "euler_a", "ddim", "dpmpp_2m", "lcm"] {
        pipeline_golden(name, BackendPreference::Flex);
    }
}

#[test]
fn a_scheduler_refuses_what_it_cannot_do() {
    let config: SchedulerConfig = serde_json::from_value(serde_json::json!({})).expect("defaults");
    assert!(Scheduler::new(SchedulerKind::Euler, &config, 0).is_err());
    assert!(Scheduler::new(SchedulerKind::Euler, &config, 1001).is_err());
    let v: SchedulerConfig =
        serde_json::from_value(serde_json::json!({"prediction_type": "v_prediction"}))
            .expect("parses");
    assert!(Scheduler::new(SchedulerKind::Ddim, &v, 4).is_err());
    assert!(SchedulerKind::from_class("PNDMScheduler").is_none());
    for key in [
        "thresholding",
        "rescale_betas_zero_snr",
        "use_karras_sigmas",
        "use_exponential_sigmas",
        "use_beta_sigmas",
    ] {
        let c: SchedulerConfig =
            serde_json::from_value(serde_json::json!({ key: true })).expect("parses");
        let kind = match key {
            "thresholding" => SchedulerKind::Ddim,
            _ => SchedulerKind::Euler,
        };
        let e = Scheduler::new(kind, &c, 4).err().expect("refused");
        assert!(e.to_string().contains(key), "{e}");
    }
    // Keys another kind reads do not stop this one; a bad clamp range is refused.
    let karras: SchedulerConfig =
        serde_json::from_value(serde_json::json!({"use_karras_sigmas": true})).expect("parses");
    assert!(Scheduler::new(SchedulerKind::Ddim, &karras, 4).is_ok());
    let range: SchedulerConfig =
        serde_json::from_value(serde_json::json!({"clip_sample_range": -1.0})).expect("parses");
    assert!(Scheduler::new(SchedulerKind::Ddim, &range, 4).is_err());
}

#[test]
fn ddim_clamps_its_clean_estimate_and_ends_where_set_alpha_to_one_says() {
    // One step of 1: from t = 1 (leading, offset 1) to the final ᾱ.
    let config = |clip: bool, to_one: bool| -> SchedulerConfig {
        serde_json::from_value(serde_json::json!({
            "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02,
            "steps_offset": 1, "clip_sample": clip, "set_alpha_to_one": to_one,
        }))
        .expect("config")
    };
    let (sample, eps) = ([3.0f32, -0.5], [0.1f32, 0.2]);
    let a: Vec<f64> = config(false, false).alphas_cumprod().expect("alphas");
    let x0 = |x: f32, e: f32| ((x as f64 - (1.0 - a[1]).sqrt() * e as f64) / a[1].sqrt()) as f32;
    for (clip, to_one) in [(false, false), (true, false), (true, true)] {
        let mut s = Scheduler::new(SchedulerKind::Ddim, &config(clip, to_one), 1).expect("ddim");
        assert_eq!(s.timesteps(), [1.0]);
        let got = s.step(&eps, 0, &sample, None);
        let end = if to_one { 1.0 } else { a[0] };
        for k in 0..2 {
            let mut want_x0 = x0(sample[k], eps[k]);
            if clip {
                want_x0 = want_x0.clamp(-1.0, 1.0);
            }
            let want = end.sqrt() as f32 * want_x0 + (1.0 - end).sqrt() as f32 * eps[k];
            assert!(
                (got[k] - want).abs() < 1e-5,
                "{clip} {to_one}: {} vs {want}",
                got[k]
            );
        }
        if clip {
            assert!(got[0] <= 1.0 + 1e-3, "clamped: {}", got[0]);
        }
    }
    // Absent, the classes' defaults: DDIM clamps, to ᾱ = 1.
    let plain: SchedulerConfig =
        serde_json::from_value(serde_json::json!({"steps_offset": 1})).expect("config");
    let mut s = Scheduler::new(SchedulerKind::Ddim, &plain, 1).expect("ddim");
    assert!(s.step(&eps, 0, &sample, None)[0] <= 1.0);
}

mod edit;
mod engine;
mod pipeline;
mod train;
