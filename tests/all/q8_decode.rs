//! Decode steps with activations rounded to 8 bits (`decode_activations = "q8"`): how far the
//! real SmolLM2 (Q4_1 layers, Q8_0 head) moves from its f32 decode, teacher-forced along the
//! f32 reference's greedy continuations, and that the tiny Q8_0 models' greedy continuations
//! stay llama.cpp's, whose native run rounds activations to 8 bits as well.

use cinder_core::{BackendPreference, Gguf, Llama, argmax};

use crate::{ids, read_json, smollm2_path};

#[test]
fn smollm2_q8_decode_stays_near_its_f32_decode() {
    let r = read_json("smollm2/greedy.json");
    let g = Gguf::open(&smollm2_path()).expect("GGUF opens");
    let (model, _) = Llama::load(&g, BackendPreference::Cpu, 2, |_, _| {}).expect("loads");
    let (mut worst, mut steps, mut same) = (0f32, 0, 0);
    for p in r["transformers"]["prompts"]
        .as_object()
        .expect("prompts")
        .values()
    {
        let (mut exact, mut rounded) = (model.new_cache(), model.new_cache());
        let prompt = ids(&p["prompt_ids"]);
        // A prompt's rows go through the f32 kernels either way (but for the head, which
        // multiplies the last position alone).
        model.set_q8_decode(false);
        model.forward(&prompt, &mut exact).expect("prompt");
        model.set_q8_decode(true);
        model.forward(&prompt, &mut rounded).expect("prompt");
        for &t in &ids(&p["ids"]) {
            model.set_q8_decode(false);
            let a = model.forward(&[t], &mut exact).expect("f32 step");
            model.set_q8_decode(true);
            let b = model.forward(&[t], &mut rounded).expect("q8 step");
            let d = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            worst = worst.max(d);
            steps += 1;
            same += usize::from(argmax(&a) == argmax(&b));
        }
    }
    eprintln!("q8 decode: max |Δ logit| {worst} over {steps} steps; same argmax {same}/{steps}");
    // Measured (session 18): 3.29 at most over the 200 steps, the same argmax in 191. For
    // scale, llama.cpp's native run of this file (8-bit activations throughout, f16 KV) is up
    // to 1.77 from f32 math on one forward of the chat prompt, its argmax flipped
    // (../shared/reference/smollm2/logits.json).
    assert!(worst > 0.0, "the q8 kernels ran");
    assert!(worst < 5.0, "max |Δ| {worst}");
    assert!(same * 100 >= steps * 90, "{same}/{steps}");
}
