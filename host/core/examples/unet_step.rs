//! The UNet's cost per denoising step on burn, next to diffusers/PyTorch on the same weights
//! (`xtask/bench/unet_reference.py` runs the same shapes): one step is one forward of a
//! guidance batch of 2 (unconditional and conditional) at a latent size. Weights need not be
//! trained: a step's cost does not depend on what they say, so a random SD-1.5-shaped UNet
//! made by the reference script measures it.
//!
//! `cargo run --release -p cinder-core --example unet_step -- UNET_DIR SIDE [STEPS] [flex|wgpu]`
//! (`SIDE` in latent positions: 64 for a 512-pixel SD 1.5 image).

use std::path::PathBuf;
use std::time::Instant;

use cinder_core::{BackendPreference, UNet};

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(
        args.first()
            .ok_or_else(|| anyhow::anyhow!("UNET_DIR SIDE [STEPS] [flex|wgpu]"))?,
    );
    let side: usize = args.get(1).map_or(Ok(64), |s| s.parse())?;
    let steps: usize = args.get(2).map_or(Ok(3), |s| s.parse())?;
    let pref = match args.get(3).map(String::as_str) {
        Some("wgpu") => BackendPreference::Wgpu,
        _ => BackendPreference::Flex,
    };
    let started = Instant::now();
    let (unet, kind) = UNet::load(&dir, pref)?;
    let load = started.elapsed().as_secs_f64();
    let c = unet.config();
    let dims = [2, c.in_channels, side, side];
    let sample: Vec<f32> = (0..dims.iter().product::<usize>())
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let context = vec![0.01f32; 2 * 77 * c.cross_attention_dim];
    let mut times = Vec::new();
    // The first step also warms up (kernels, allocations); it is reported apart.
    for i in 0..=steps {
        let t = Instant::now();
        let out = unet.predict(
            &sample,
            dims,
            999.0 - i as f32,
            &context,
            [2, 77, c.cross_attention_dim],
        )?;
        std::hint::black_box(out);
        times.push(t.elapsed().as_secs_f64());
    }
    let warm = &times[1..];
    let mean = warm.iter().sum::<f64>() / warm.len().max(1) as f64;
    println!(
        "backend {} | load {load:.2} s | first step {:.3} s | step (batch 2, {side}x{side} latents) mean {mean:.3} s over {} | peak RSS {:.0} MiB",
        kind.name(),
        times[0],
        warm.len(),
        rss_mib()
    );
    Ok(())
}
