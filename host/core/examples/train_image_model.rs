//! Trains Cinder's default image model from scratch (`cargo xtask train-image-model` fetches
//! the data and runs this): a UNet on 32x32 RGB pixels, conditioned on all-MiniLM-L6-v2's
//! vector of an emoji's name, trained with burn's autodiff on the Noto emoji images of npm's
//! `emoji-datasource-google` (every tenth emoji by sort order held out), then measured: each
//! held-out name's image, its five nearest training images by pixel distance, and whether one
//! of them is of the held-out emoji's subcategory (top-5), beside the same count for images
//! of other held-out names (the chance level of the check).
//!
//! `cargo run --release -p cinder-core --example train_image_model -- --data PACKAGE_DIR
//! --text-encoder MINILM_DIR --out MODEL_DIR --report REPORT_DIR [--steps N] [--batch B]
//! [--seed S] [--lr LR] [--channels 32,64,96] [--samples-every EPOCHS] [--f32]
//! [--init UNET_DIR] [--regrid SNAPSHOT_DIR] [--ema DECAY]` (`--init` goes on from a saved UNet: training
//! spread over runs; `--steps 0 --init` only evaluates; `--regrid` samples each epoch's saved
//! UNet, `NNN.safetensors`, again with this build)

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cinder_core::{
    BackendPreference, Embedder, ImageRequest, Pipeline, SchedulerConfig, SchedulerKind,
    TrainSettings, Trainer, UNetConfig,
};
use serde_json::{Value, json};

/// The side the model works at, in pixels.
const SIDE: usize = 32;
/// The share of steps whose rows carry the empty prompt (classifier-free guidance learns the
/// unconditional prediction from them).
const UNCONDITIONAL: f64 = 0.1;

struct Args {
    data: PathBuf,
    text_encoder: PathBuf,
    out: PathBuf,
    report: PathBuf,
    steps: usize,
    batch: usize,
    seed: u64,
    lr: f32,
    channels: Vec<usize>,
    samples_every: usize,
    half: bool,
    init: Option<PathBuf>,
    regrid: Option<PathBuf>,
    ema: Option<f32>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        data: PathBuf::new(),
        text_encoder: PathBuf::new(),
        out: PathBuf::new(),
        report: PathBuf::new(),
        steps: 3000,
        batch: 16,
        seed: 23,
        lr: 1e-3,
        channels: vec![32, 64, 96],
        samples_every: 1,
        half: true,
        init: None,
        regrid: None,
        ema: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--f32" {
            a.half = false;
            continue;
        }
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--data" => a.data = value.into(),
            "--text-encoder" => a.text_encoder = value.into(),
            "--out" => a.out = value.into(),
            "--report" => a.report = value.into(),
            "--steps" => a.steps = value.parse()?,
            "--batch" => a.batch = value.parse()?,
            "--seed" => a.seed = value.parse()?,
            "--lr" => a.lr = value.parse()?,
            "--init" => a.init = Some(value.into()),
            "--regrid" => a.regrid = Some(value.into()),
            "--ema" => a.ema = Some(value.parse()?),
            "--samples-every" => a.samples_every = value.parse::<usize>()?.max(1),
            "--channels" => {
                a.channels = value.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            other => bail!("unknown flag {other}"),
        }
    }
    if a.data.as_os_str().is_empty() || a.out.as_os_str().is_empty() {
        bail!("--data and --out are needed");
    }
    Ok(a)
}

/// One emoji: its picture at [`SIDE`] in [-1, 1] (CHW), the texts it is called by, and its
/// subcategory.
struct Emoji {
    pixels: Vec<f32>,
    texts: Vec<String>,
    subcategory: String,
    held_out: bool,
}

/// The 64-pixel PNG as [`SIDE`]-pixel RGB on white, each output pixel the mean of 2x2.
fn picture(path: &Path) -> Result<Vec<f32>> {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path)?));
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size().context("png size")?];
    let info = reader.next_frame(&mut buf)?;
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = info.color_type.samples();
    if w != 2 * SIDE || h != 2 * SIDE || info.bit_depth != png::BitDepth::Eight {
        bail!("{}: {w}x{h} {:?}", path.display(), info.bit_depth);
    }
    let rgb = |x: usize, y: usize, c: usize| -> f32 {
        let p = &buf[(y * w + x) * channels..];
        let alpha = if channels == 4 {
            f32::from(p[3]) / 255.0
        } else {
            1.0
        };
        let v = if channels >= 3 { p[c] } else { p[0] };
        f32::from(v) / 255.0 * alpha + (1.0 - alpha)
    };
    let mut out = vec![0f32; 3 * SIDE * SIDE];
    for c in 0..3 {
        for y in 0..SIDE {
            for x in 0..SIDE {
                let sum = rgb(2 * x, 2 * y, c)
                    + rgb(2 * x + 1, 2 * y, c)
                    + rgb(2 * x, 2 * y + 1, c)
                    + rgb(2 * x + 1, 2 * y + 1, c);
                out[c * SIDE * SIDE + y * SIDE + x] = sum / 4.0 * 2.0 - 1.0;
            }
        }
    }
    Ok(out)
}

fn emoji(data: &Path) -> Result<Vec<Emoji>> {
    let list: Value = serde_json::from_slice(&std::fs::read(data.join("emoji.json"))?)?;
    let mut out = Vec::new();
    for e in list.as_array().context("emoji.json is a list")? {
        let str_of = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
        if e["has_img_google"] != true || str_of("category") == "Component" {
            continue;
        }
        let mut texts = vec![str_of("name").to_lowercase()];
        for short in e["short_names"].as_array().into_iter().flatten() {
            let t = short.as_str().unwrap_or_default().replace(['_', '-'], " ");
            if !t.is_empty() && !texts.contains(&t) {
                texts.push(t);
            }
        }
        let order = e["sort_order"].as_u64().unwrap_or(0);
        out.push(Emoji {
            pixels: picture(&data.join("img/google/64").join(str_of("image")))?,
            texts,
            subcategory: str_of("subcategory"),
            held_out: order % 10 == 0,
        });
    }
    Ok(out)
}

/// The UNet: a block per entry of `channels`, the first without attention.
fn unet_config(channels: &[usize]) -> Value {
    let n = channels.len();
    let down: Vec<&str> = (0..n)
        .map(|i| match i {
            0 => "DownBlock2D",
            _ => "CrossAttnDownBlock2D",
        })
        .collect();
    let up: Vec<&str> = (0..n)
        .map(|i| match i + 1 == n {
            true => "UpBlock2D",
            false => "CrossAttnUpBlock2D",
        })
        .collect();
    json!({
        "_class_name": "UNet2DConditionModel",
        "_diffusers_version": "0.42.1",
        "act_fn": "silu",
        "attention_head_dim": 4,
        "block_out_channels": channels,
        "center_input_sample": false,
        "cross_attention_dim": 384,
        "down_block_types": down,
        "downsample_padding": 1,
        "flip_sin_to_cos": true,
        "freq_shift": 0,
        "in_channels": 3,
        "layers_per_block": 1,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-05,
        "norm_num_groups": 16,
        "out_channels": 3,
        "sample_size": SIDE,
        "up_block_types": up
    })
}

fn scheduler_config() -> Value {
    json!({
        "_class_name": "DDIMScheduler",
        "_diffusers_version": "0.42.1",
        "beta_end": 0.02,
        "beta_schedule": "linear",
        "beta_start": 0.0001,
        "clip_sample": true,
        "num_train_timesteps": 1000,
        "prediction_type": "epsilon",
        "set_alpha_to_one": false,
        "steps_offset": 1,
        "timestep_spacing": "leading"
    })
}

/// Warm up over the first 200 steps, then a cosine down to a tenth.
fn learning_rate(base: f32, step: usize, steps: usize) -> f32 {
    let warm = 200.min(steps / 10).max(1);
    if step < warm {
        return base * (step + 1) as f32 / warm as f32;
    }
    let f = (step - warm) as f32 / (steps - warm).max(1) as f32;
    base * (0.1 + 0.9 * 0.5 * (1.0 + (std::f32::consts::PI * f).cos()))
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    std::fs::create_dir_all(path.parent().context("a folder")?)?;
    std::fs::write(path, serde_json::to_vec_pretty(v)?)?;
    Ok(())
}

/// The folder the server loads: a `CinderPixelPipeline` with its UNet, scheduler and the
/// text encoder it was trained on.
fn save_pipeline(trainer: &Trainer, a: &Args, text_encoder: &str) -> Result<()> {
    let out = &a.out;
    trainer.save(&out.join("unet"), &unet_config(&a.channels), a.half)?;
    write_json(
        &out.join("scheduler/scheduler_config.json"),
        &scheduler_config(),
    )?;
    write_json(
        &out.join("text_encoder/cinder.json"),
        &json!({"path": text_encoder}),
    )?;
    write_json(
        &out.join("model_index.json"),
        &json!({
            "_class_name": "CinderPixelPipeline",
            "scheduler": ["diffusers", "DDIMScheduler"],
            "text_encoder": ["sentence-transformers", "all-MiniLM-L6-v2"],
            "unet": ["diffusers", "UNet2DConditionModel"]
        }),
    )
}

/// `pictures` (RGB bytes, `side` square) in a grid of `columns`, as a PNG.
fn grid(path: &Path, pictures: &[Vec<u8>], side: usize, columns: usize) -> Result<()> {
    let rows = pictures.len().div_ceil(columns);
    let (w, h) = (columns * side, rows * side);
    let mut rgb = vec![255u8; w * h * 3];
    for (i, p) in pictures.iter().enumerate() {
        let (gx, gy) = ((i % columns) * side, (i / columns) * side);
        for y in 0..side {
            let from = y * side * 3;
            let to = ((gy + y) * w + gx) * 3;
            rgb[to..to + side * 3].copy_from_slice(&p[from..from + side * 3]);
        }
    }
    std::fs::create_dir_all(path.parent().context("a folder")?)?;
    let mut e = png::Encoder::new(
        std::io::BufWriter::new(std::fs::File::create(path)?),
        w as u32,
        h as u32,
    );
    e.set_color(png::ColorType::Rgb);
    e.set_depth(png::BitDepth::Eight);
    e.write_header()?.write_image_data(&rgb)?;
    Ok(())
}

fn to_bytes(pixels: &[f32]) -> Vec<u8> {
    let n = SIDE * SIDE;
    (0..n)
        .flat_map(|i| (0..3).map(move |c| (c, i)))
        .map(|(c, i)| ((pixels[c * n + i] / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect()
}

fn generate(pipe: &Pipeline, prompt: &str, seed: u64, steps: usize) -> Result<Vec<u8>> {
    let r = ImageRequest {
        prompt: prompt.into(),
        negative_prompt: String::new(),
        width: SIDE,
        height: SIDE,
        steps,
        guidance: 3.0,
        seed,
        scheduler: Some(SchedulerKind::Ddim),
        fast_decode: false,
        source: None,
    };
    Ok(pipe.generate(&r, &mut |_| true)?.rgb)
}

/// Eight training names at ten DDIM steps with the model in `a.out` (cheap next to an
/// epoch; the final measure uses 25), as a grid at `path`.
fn sample_grid(a: &Args, data: &[Emoji], path: &Path) -> Result<()> {
    let (pipe, _) = Pipeline::load(&a.out, BackendPreference::Flex)?;
    let train: Vec<&Emoji> = data.iter().filter(|e| !e.held_out).collect();
    let shown: Vec<Vec<u8>> = train
        .iter()
        .step_by((train.len() / 8).max(1))
        .take(8)
        .enumerate()
        .map(|(k, e)| generate(&pipe, &e.texts[0], k as u64, 10))
        .collect::<Result<_>>()?;
    grid(path, &shown, SIDE, 8)
}

/// Held-out names: how often one of the 5 training images nearest (by pixel distance) to a
/// name's image shares its subcategory; and the same for the image of another held-out name.
fn evaluate(pipe: &Pipeline, data: &[Emoji], report: &Path) -> Result<Value> {
    let train: Vec<&Emoji> = data.iter().filter(|e| !e.held_out).collect();
    let held: Vec<&Emoji> = data.iter().filter(|e| e.held_out).collect();
    let train_bytes: Vec<Vec<u8>> = train.iter().map(|e| to_bytes(&e.pixels)).collect();
    let top5 = |img: &[u8], subcategory: &str| {
        let mut d: Vec<(u64, usize)> = train_bytes
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let dist = t
                    .iter()
                    .zip(img)
                    .map(|(a, b)| u64::from(a.abs_diff(*b)).pow(2))
                    .sum();
                (dist, i)
            })
            .collect();
        d.sort_unstable();
        d[..5]
            .iter()
            .any(|&(_, i)| train[i].subcategory == subcategory)
    };
    let images: Vec<Vec<u8>> = held
        .iter()
        .enumerate()
        .map(|(i, e)| generate(pipe, &e.texts[0], 1000 + i as u64, 25))
        .collect::<Result<_>>()?;
    let hits = held
        .iter()
        .zip(&images)
        .filter(|(e, img)| top5(img, &e.subcategory))
        .count();
    // Chance: the image made for the next held-out name, judged against this one's.
    let chance = held
        .iter()
        .enumerate()
        .filter(|(i, e)| top5(&images[(i + 1) % images.len()], &e.subcategory))
        .count();
    let mut shown = Vec::new();
    for (e, img) in held.iter().zip(&images).take(32) {
        shown.push(to_bytes(&e.pixels));
        shown.push(img.clone());
    }
    grid(&report.join("held_out.png"), &shown, SIDE, 16)?;
    let n = held.len() as f64;
    Ok(json!({
        "held_out": held.len(),
        "top5_subcategory": hits as f64 / n,
        "top5_subcategory_other_name": chance as f64 / n,
        "examples": held.iter().take(32).map(|e| e.texts[0].clone()).collect::<Vec<_>>(),
    }))
}

fn main() -> Result<()> {
    let a = args()?;
    let started = Instant::now();
    let data = emoji(&a.data)?;
    let (encoder, _) = Embedder::load(&a.text_encoder, BackendPreference::Cpu, None)?;
    let embed = |t: &str| -> Result<Vec<f32>> {
        let (ids, _) = encoder.tokenize(t)?;
        Ok(encoder.embed(&[ids])?.remove(0))
    };
    let empty = embed("")?;
    let vectors: Vec<Vec<Vec<f32>>> = data
        .iter()
        .map(|e| e.texts.iter().map(|t| embed(t)).collect::<Result<_>>())
        .collect::<Result<_>>()?;
    let train: Vec<usize> = (0..data.len()).filter(|&i| !data[i].held_out).collect();
    eprintln!(
        "{} emoji ({} held out), {} texts, prepared in {:.1} s",
        data.len(),
        data.len() - train.len(),
        vectors.iter().map(Vec::len).sum::<usize>(),
        started.elapsed().as_secs_f32()
    );
    let config: UNetConfig = serde_json::from_value(unet_config(&a.channels))?;
    let schedule: SchedulerConfig = serde_json::from_value(scheduler_config())?;
    let settings = TrainSettings {
        ema_decay: a.ema,
        ..TrainSettings::default()
    };
    let mut trainer = match &a.init {
        Some(dir) => Trainer::resume(config, dir, &schedule, settings, a.seed)?,
        None => Trainer::new(config, &schedule, settings, a.seed)?,
    };
    eprintln!("UNet: {} parameters", trainer.parameter_count());
    let mut rng = cinder_core::Rng::new(a.seed ^ 0x5eed);
    let bar = indicatif::ProgressBar::new(a.steps as u64);
    bar.set_style(indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} steps, {elapsed} elapsed, {eta} left, {msg}",
    )?);
    let mut curve = String::from("step,loss,learning_rate,seconds\n");
    let (mut ema, dims) = (None::<f32>, [a.batch, 3, SIDE, SIDE]);
    // Written as `~/...` when under the home folder, as the config's paths are, so the
    // committed folder loads on any machine that set up the default models.
    let text_encoder = match std::env::var_os("HOME").and_then(|home| {
        a.text_encoder
            .strip_prefix(home)
            .ok()
            .map(Path::to_path_buf)
    }) {
        Some(rest) => format!("~/{}", rest.display()),
        None => a.text_encoder.display().to_string(),
    };
    // An epoch: as many rows as there are training emoji (rows are drawn with replacement).
    let epoch = train.len().div_ceil(a.batch).max(1);
    for step in 0..a.steps {
        let mut clean = Vec::with_capacity(a.batch * 3 * SIDE * SIDE);
        let mut context = Vec::with_capacity(a.batch * 384);
        for _ in 0..a.batch {
            let i = train[(rng.next_f64() * train.len() as f64) as usize % train.len()];
            clean.extend_from_slice(&data[i].pixels);
            let v = match rng.next_f64() < UNCONDITIONAL {
                true => &empty,
                false => {
                    let k = (rng.next_f64() * vectors[i].len() as f64) as usize;
                    &vectors[i][k.min(vectors[i].len() - 1)]
                }
            };
            context.extend_from_slice(v);
        }
        let lr = learning_rate(a.lr, step, a.steps);
        let loss = trainer.step(&clean, dims, &context, [a.batch, 1, 384], lr)?;
        let smoothed = ema.map_or(loss, |e| 0.98 * e + 0.02 * loss);
        ema = Some(smoothed);
        bar.set_message(format!("loss {smoothed:.4}"));
        bar.inc(1);
        if step % 10 == 0 || step + 1 == a.steps {
            curve.push_str(&format!(
                "{step},{loss},{lr},{:.1}\n",
                started.elapsed().as_secs_f32()
            ));
        }
        if (step + 1) % (epoch * a.samples_every) == 0 || step + 1 == a.steps {
            // Per epoch: the curve so far, the model so far and a grid of samples.
            std::fs::create_dir_all(&a.report)?;
            std::fs::write(a.report.join("loss.csv"), &curve)?;
            save_pipeline(&trainer, &a, &text_encoder)?;
            let n = (step + 1).div_ceil(epoch);
            sample_grid(
                &a,
                &data,
                &a.report.join(format!("samples_epoch_{n:03}.png")),
            )?;
        }
    }
    bar.finish();
    if a.steps == 0 {
        // Evaluation only (of `--init`): the folder as this build writes it.
        save_pipeline(&trainer, &a, &text_encoder)?;
    }
    if let Some(dir) = &a.regrid {
        // Each saved epoch's UNet (NNN.safetensors) sampled again, then the final one back.
        let mut saved: Vec<PathBuf> = std::fs::read_dir(dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        saved.sort();
        let unet = a.out.join("unet/diffusion_pytorch_model.safetensors");
        for snapshot in saved {
            let n = snapshot
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            std::fs::copy(&snapshot, &unet)?;
            sample_grid(&a, &data, &a.report.join(format!("samples_epoch_{n}.png")))?;
        }
        save_pipeline(&trainer, &a, &text_encoder)?;
    }
    let (pipe, _) = Pipeline::load(&a.out, BackendPreference::Flex)?;
    let mut eval = evaluate(&pipe, &data, &a.report)?;
    eval["steps"] = json!(a.steps);
    eval["evaluated_only"] = json!(a.steps == 0);
    eval["batch"] = json!(a.batch);
    eval["seed"] = json!(a.seed);
    eval["parameters"] = json!(trainer.parameter_count());
    eval["channels"] = json!(a.channels);
    eval["ema_decay"] = json!(a.ema);
    eval["epochs"] = json!(a.steps as f64 / epoch as f64);
    eval["train_seconds"] = json!(started.elapsed().as_secs_f64());
    eval["final_loss_ema"] = json!(ema);
    write_json(&a.report.join("eval.json"), &eval)?;
    println!("{}", serde_json::to_string_pretty(&eval)?);
    Ok(())
}
