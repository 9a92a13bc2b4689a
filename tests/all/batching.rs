//! Continuous batching on the CPU path, checked against the references: sequences forwarded
//! together give the logits they give alone, and the engine, running every greedy reference
//! prompt at once (decode steps and prompt chunks sharing forwards), reproduces each
//! reference continuation token for token.

use cinder_core::{BackendPreference, GenEvent, Gguf, Llama};

use crate::{greedy_request, ids, read_json};

#[test]
fn a_batch_gives_each_sequence_the_logits_it_gets_alone() {
    let gguf = Gguf::open(&crate::smollm2_path()).expect("model file");
    let (model, _) = Llama::load(&gguf, BackendPreference::Cpu, 2, |_, _| {}).expect("loads");
    let r = read_json("smollm2/logits.json");
    let prompts: Vec<Vec<u32>> = r["transformers"]["prompts"]
        .as_object()
        .expect("prompts")
        .values()
        .map(|p| ids(&p["ids"]))
        .collect();
    // Alone: each prompt, then one more token.
    let alone: Vec<Vec<f32>> = prompts
        .iter()
        .map(|p| {
            let mut cache = model.new_cache();
            model.forward(p, &mut cache).expect("prefill");
            model.forward(&[42], &mut cache).expect("decode")
        })
        .collect();
    // Together: the first prompt prefilled alone and decoding while the other two prefill,
    // then all three decode in one batch.
    let mut caches: Vec<_> = prompts.iter().map(|_| model.new_cache()).collect();
    let [c0, c1, c2] = &mut caches[..] else {
        panic!("three prompts")
    };
    model.forward(&prompts[0], c0).expect("prefill 0");
    let mixed = model
        .forward_batch(&mut [(&[42], c0), (&prompts[1], c1), (&prompts[2], c2)])
        .expect("mixed batch");
    let decode = model
        .forward_batch(&mut [(&[42], c1), (&[42], c2)])
        .expect("decode batch");
    for (got, want) in [
        (&mixed[0], &alone[0]),
        (&decode[0], &alone[1]),
        (&decode[1], &alone[2]),
    ] {
        let worst = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-3, "max |Δ| {worst}");
    }
}

#[test]
fn the_engine_batches_every_greedy_reference_at_once_and_matches_each() {
    let model = crate::load_smollm2();
    let r = read_json("smollm2/greedy.json");
    let max_new = r["max_new_tokens"].as_u64().expect("max_new_tokens") as u32;
    let prompts = r["transformers"]["prompts"].as_object().expect("prompts");
    // All submitted before any finishes: their prompts share steps (chunked under the
    // budget), then they decode side by side.
    let receivers: Vec<_> = prompts
        .iter()
        .map(|(name, p)| {
            let rx = model
                .engine
                .submit(greedy_request(ids(&p["prompt_ids"]), max_new))
                .expect("submitted");
            (name.clone(), ids(&p["ids"]), rx)
        })
        .collect();
    for (name, want, mut rx) in receivers {
        let mut got = Vec::new();
        while let Some(ev) = rx.blocking_recv() {
            match ev {
                GenEvent::Delta { tokens, .. } => got.extend(tokens),
                GenEvent::Finished { .. } => break,
                GenEvent::Failed(e) => panic!("{name}: {e}"),
            }
        }
        assert_eq!(got, want, "{name}");
    }
}
