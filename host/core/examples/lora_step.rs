//! Time LoRA training steps on a real model: `cargo run --release --example lora_step --
//! MODEL.gguf [TOKENS] [STEPS]` (defaults 128 tokens, 5 steps). Prints the loss and seconds
//! per step and training tokens per second (every token of the sequence runs forward and
//! backward; half are answer tokens). Adapter: rank 8, alpha 16, all seven projections.

use std::time::Instant;

use cinder_core::{Gguf, LoraConfig, LoraTarget, LoraTrainer, TrainSettings, TrainingExample};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .ok_or_else(|| anyhow::anyhow!("usage: lora_step MODEL.gguf [TOKENS] [STEPS]"))?;
    let n: usize = args.get(2).map_or(Ok(128), |s| s.parse())?;
    let steps: usize = args.get(3).map_or(Ok(5), |s| s.parse())?;
    let g = Gguf::open(std::path::Path::new(path))?;
    let config = LoraConfig {
        rank: 8,
        alpha: 16.0,
        targets: LoraTarget::ALL.to_vec(),
    };
    let load = Instant::now();
    let mut t = LoraTrainer::start(&g, config, TrainSettings::default(), 1)?;
    eprintln!(
        "loaded in {:.1} s; {} adapter parameters",
        load.elapsed().as_secs_f64(),
        t.weights().parameter_count()
    );
    let tokens: Vec<u32> = (0..n as u32).map(|i| 100 + (i * 37) % 5000).collect();
    let example = TrainingExample {
        answer: (0..n).map(|i| i >= n / 2).collect(),
        tokens,
    };
    for s in 0..steps {
        let at = Instant::now();
        let loss = t.step(std::slice::from_ref(&example), 1e-3)?;
        let secs = at.elapsed().as_secs_f64();
        println!(
            "step {s}: loss {loss:.4}, {secs:.2} s, {:.0} tokens/s",
            n as f64 / secs
        );
    }
    Ok(())
}
