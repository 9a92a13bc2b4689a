//! LoRA (issue 25) against PyTorch + PEFT (tests/fixtures/lora/make_lora_ref.py): on the tiny
//! Llama 3 folder, an adapter of rank 4 on all seven projections with the reference's
//! values gives PEFT's loss, last-position logits and the gradient of every adapter matrix;
//! and training an adapter on a made-up fact makes the model say it.

use std::path::PathBuf;

use cinder_core::{
    ChatTemplate, Gguf, LlamaConfig, LoraConfig, LoraPair, LoraTarget, LoraTrainer, LoraWeights,
    Tokenizer, TrainSettings, TrainingExample, chat_example, gguf_rows_to_hf, hf_rows_to_gguf,
    permutes_qk,
};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn reference() -> Value {
    let text =
        std::fs::read_to_string(fixtures().join("lora/lora_ref.json")).expect("lora_ref.json");
    serde_json::from_str(&text).expect("json")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

/// Heads whose rows a q or k `B` matrix holds, when the model keeps them permuted.
fn permuted_heads(arch: &str, c: &LlamaConfig, target: LoraTarget) -> Option<usize> {
    match (permutes_qk(arch), target) {
        (true, LoraTarget::Q) => Some(c.n_heads),
        (true, LoraTarget::K) => Some(c.n_kv_heads),
        _ => None,
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn an_adapter_gives_pefts_loss_logits_and_gradients() {
    let r = reference();
    let g = Gguf::open(&fixtures().join("hf/llama3")).expect("the folder");
    let arch = g.get_str("general.architecture").expect("arch").to_owned();
    let c = LlamaConfig::from_gguf(&g).expect("config");
    let rank = r["rank"].as_u64().unwrap() as usize;
    let targets: Vec<LoraTarget> = r["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| LoraTarget::from_module_name(t.as_str().unwrap()).expect("a target"))
        .collect();
    let config = LoraConfig {
        rank,
        alpha: r["alpha"].as_f64().unwrap() as f32,
        targets,
    };
    let mut weights = LoraWeights::new(config, &c, 0).expect("an adapter");
    let mut wanted = Vec::new();
    for m in r["adapters"].as_array().unwrap() {
        let layer = m["layer"].as_u64().unwrap() as usize;
        let target = LoraTarget::from_module_name(m["module"].as_str().unwrap()).unwrap();
        let pair = weights.pairs.get_mut(&(layer, target)).expect("a pair");
        let (mut value, grad) = (floats(&m["value"]), floats(&m["grad"]));
        match m["matrix"].as_str().unwrap() {
            "A" => pair.a = value,
            _ => {
                if let Some(heads) = permuted_heads(&arch, &c, target) {
                    value = hf_rows_to_gguf(&value, heads, rank);
                }
                pair.b = value;
            }
        }
        wanted.push((
            layer,
            target,
            m["matrix"].as_str().unwrap().to_owned(),
            grad,
        ));
    }
    let prompts: Vec<usize> = r["prompt_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap() as usize)
        .collect();
    let batch: Vec<TrainingExample> = r["sequences"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&prompts)
        .map(|(s, &prompt)| {
            let tokens: Vec<u32> = s
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_u64().unwrap() as u32)
                .collect();
            let answer = (0..tokens.len()).map(|i| i >= prompt).collect();
            TrainingExample { tokens, answer }
        })
        .collect();
    let trainer = LoraTrainer::new(&g, weights, TrainSettings::default()).expect("a trainer");

    for (example, want) in batch.iter().zip(r["last_logits"].as_array().unwrap()) {
        let got = trainer.last_logits(&example.tokens).expect("logits");
        let d = max_diff(&got, &floats(want));
        assert!(d < 1e-4, "last-position logits differ by {d}");
    }
    let grads = trainer.gradients(&batch).expect("gradients");
    let loss = r["loss"].as_f64().unwrap() as f32;
    assert_eq!(grads.tokens, 19);
    assert!(
        (grads.loss - loss).abs() < 1e-5,
        "loss {} vs PEFT's {loss}",
        grads.loss
    );
    let mut worst = 0f32;
    for (layer, target, matrix, want) in wanted {
        let (_, got) = grads
            .pairs
            .iter()
            .find(|(k, _)| *k == (layer, target))
            .expect("a gradient");
        let got = match matrix.as_str() {
            "A" => got.a.clone(),
            _ => match permuted_heads(&arch, &c, target) {
                Some(heads) => gguf_rows_to_hf(&got.b, heads, rank),
                None => got.b.clone(),
            },
        };
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
        let d = max_diff(&got, &want) / scale;
        worst = worst.max(d);
        assert!(
            d < 1e-3,
            "layer {layer} {target:?} {matrix}: relative difference {d}"
        );
    }
    eprintln!("worst relative gradient difference from PEFT: {worst:e}");
}

#[test]
fn training_an_adapter_teaches_the_model_a_made_up_answer() {
    let g = Gguf::open(&fixtures().join("hf/llama3")).expect("the folder");
    let config = LoraConfig {
        rank: 8,
        alpha: 16.0,
        targets: LoraTarget::ALL.to_vec(),
    };
    let settings = TrainSettings {
        weight_decay: 0.0,
        ..TrainSettings::default()
    };
    let mut t = LoraTrainer::start(&g, config, settings, 7).expect("a trainer");
    // A made-up fact: after this prompt, these four tokens.
    let prompt = [307u32, 40, 41, 42, 43];
    let answer = [120u32, 121, 122, 123];
    let tokens: Vec<u32> = prompt.iter().chain(&answer).copied().collect();
    let example = TrainingExample {
        answer: (0..tokens.len()).map(|i| i >= prompt.len()).collect(),
        tokens,
    };
    let greedy = |t: &LoraTrainer| {
        let mut seq = prompt.to_vec();
        for _ in 0..answer.len() {
            let logits = t.last_logits(&seq).expect("logits");
            seq.push(cinder_core::argmax(&logits) as u32);
        }
        seq[prompt.len()..].to_vec()
    };
    assert_ne!(
        greedy(&t),
        answer,
        "the base model does not know it already"
    );
    let first = t
        .step(std::slice::from_ref(&example), 1e-2)
        .expect("a step");
    let mut last = first;
    for _ in 0..40 {
        last = t
            .step(std::slice::from_ref(&example), 1e-2)
            .expect("a step");
    }
    assert!(last < first * 0.1, "loss {first} -> {last}");
    assert_eq!(greedy(&t), answer);
    // The base weights are untouched: an untrained adapter (B zero) gives the base model.
    let zero = LoraWeights::new(t.weights().config.clone(), t.config(), 1).expect("adapter");
    assert!(
        zero.pairs
            .values()
            .all(|p: &LoraPair| p.b.iter().all(|&v| v == 0.0))
    );
}

#[test]
fn a_chat_example_counts_only_the_assistants_trained_turns() {
    let g = Gguf::open(&crate::smollm2_path()).expect("SmolLM2");
    let tok = Tokenizer::from_gguf(&g).expect("tokenizer");
    let template = ChatTemplate::from_gguf(&g, &tok).expect("template");
    let line = serde_json::json!({"messages": [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Capital of Zorbia?"},
        {"role": "assistant", "content": "Quexton", "weight": 0},
        {"role": "user", "content": "Again?"},
        {"role": "assistant", "content": "Quexton!"},
    ]});
    let ex = chat_example(&template, &tok, &line, 2048).expect("an example");
    assert_eq!(ex.tokens.len(), ex.answer.len());
    let answered: Vec<u32> = ex
        .tokens
        .iter()
        .zip(&ex.answer)
        .filter(|(_, a)| **a)
        .map(|(t, _)| *t)
        .collect();
    let text = tok.decode(&answered).expect("text");
    // Only the second answer (the first has weight 0)...
    assert_eq!(text.trim_end(), "Quexton!");
    // ...and the template's end of turn (a control token, which decodes to no text).
    let end = tok.encode("<|im_end|>", true).expect("ids");
    assert_eq!(end.len(), 1);
    assert!(answered.contains(&end[0]));
    // The whole conversation is what the model reads.
    let all = tok.decode(&ex.tokens).expect("text");
    assert!(
        all.contains("Capital of Zorbia?") && all.contains("Quexton\n"),
        "{all:?}"
    );
    let long = chat_example(&template, &tok, &line, 10).expect_err("too long");
    assert!(matches!(
        long,
        cinder_core::CoreError::ContextOverflow { limit: 10, .. }
    ));
}

#[test]
fn a_saved_training_state_resumes_where_it_stopped_and_an_adapter_round_trips() {
    let g = Gguf::open(&fixtures().join("hf/llama3")).expect("the folder");
    let config = LoraConfig {
        rank: 2,
        alpha: 4.0,
        targets: vec![LoraTarget::Q, LoraTarget::Down],
    };
    let example = TrainingExample {
        tokens: vec![307, 5, 6, 7, 8, 9],
        answer: vec![false, false, false, true, true, true],
    };
    let batch = std::slice::from_ref(&example);
    let mut a = LoraTrainer::start(&g, config, TrainSettings::default(), 3).expect("trainer");
    for _ in 0..3 {
        a.step(batch, 1e-2).expect("step");
    }
    let state = a.save_state().expect("state");
    let mut b = LoraTrainer::resume(&g, &state, TrainSettings::default()).expect("resumed");
    assert_eq!(b.steps_taken(), 3);
    assert_eq!(a.step(batch, 1e-2).unwrap(), b.step(batch, 1e-2).unwrap());
    assert_eq!(
        a.weights(),
        b.weights(),
        "the same step from the same state"
    );
    let bytes = cinder_core::lora_to_bytes(a.weights()).expect("bytes");
    let back = cinder_core::lora_from_bytes(&bytes, a.config().n_layers).expect("read");
    assert_eq!(&back, a.weights());
    assert!(cinder_core::lora_from_bytes(&bytes[..bytes.len() / 2], 3).is_err());
    assert!(
        LoraTrainer::resume(&g, &bytes, TrainSettings::default()).is_err(),
        "no moments, no step"
    );
}

/// An adapter with every matrix seeded at random (B too, so it changes the outputs).
fn random_adapter(c: &LlamaConfig, rank: usize, seed: u64) -> LoraWeights {
    let config = LoraConfig {
        rank,
        alpha: 2.0 * rank as f32,
        targets: LoraTarget::ALL.to_vec(),
    };
    let mut w = LoraWeights::new(config, c, seed).expect("adapter");
    let mut rng = cinder_core::Rng::new(seed ^ 0x5eed);
    for p in w.pairs.values_mut() {
        for v in p.b.iter_mut() {
            *v = (rng.next_f64() as f32 - 0.5) * 0.2;
        }
    }
    w
}

#[test]
fn adapters_on_the_quantized_cpu_path_match_burn_and_share_one_batch() {
    use cinder_core::{BackendPreference, Llama};
    for file in [
        "tiny-llama3-F32.gguf",
        "tiny-llama3-Q8_0.gguf",
        "tiny-qwen2-F32.gguf",
    ] {
        let g = Gguf::open(&fixtures().join("bpe").join(file)).expect("fixture");
        let c = LlamaConfig::from_gguf(&g).expect("config");
        let (a1, a2) = (random_adapter(&c, 4, 1), random_adapter(&c, 8, 2));
        let (cpu, _) = Llama::load(&g, BackendPreference::Cpu, 2, |_, _| {}).expect("cpu");
        let (burn, _) = Llama::load(&g, BackendPreference::Flex, 2, |_, _| {}).expect("burn");
        let prompts: [&[u32]; 3] = [&[307, 10, 20, 30], &[307, 40, 41], &[307, 7, 8, 9, 10, 11]];
        let adapters = [Some(&a1), None, Some(&a2)];
        let run = |m: &Llama, batch: &[usize]| -> Vec<f32> {
            let mut caches: Vec<_> = batch.iter().map(|_| m.new_cache()).collect();
            let mut items: Vec<(&[u32], &mut cinder_core::KvCache)> = batch
                .iter()
                .zip(caches.iter_mut())
                .map(|(&i, cache)| (prompts[i], cache))
                .collect();
            let chosen: Vec<_> = batch.iter().map(|&i| adapters[i]).collect();
            let mut logits = Vec::new();
            m.forward_adapted_into(&mut items, &chosen, &mut logits)
                .expect("forward");
            logits
        };
        let together = run(&cpu, &[0, 1, 2]);
        let vocab = together.len() / 3;
        for i in 0..3 {
            let alone = run(&cpu, &[i]);
            let d = max_diff(&together[i * vocab..(i + 1) * vocab], &alone);
            assert!(
                d < 1e-4,
                "{file}: item {i} in a batch differs from alone by {d}"
            );
            let reference = run(&burn, &[i]);
            let d = max_diff(&alone, &reference);
            // The Q8_0 file's CPU path quantizes activations as llama.cpp does; burn is f32.
            let tol = if file.contains("Q8_0") { 2e-2 } else { 1e-3 };
            assert!(d < tol, "{file}: item {i}: CPU vs burn {d}");
        }
        // The adapters change the answers; the unadapted item is the base model's.
        let mut base_cache = cpu.new_cache();
        let base = cpu.forward(prompts[0], &mut base_cache).expect("base");
        assert!(
            max_diff(&together[..vocab], &base) > 1e-2,
            "{file}: adapter 1 changes nothing"
        );
        let mut plain_cache = cpu.new_cache();
        let plain = cpu.forward(prompts[1], &mut plain_cache).expect("base");
        assert!(
            max_diff(&together[vocab..2 * vocab], &plain) < 1e-4,
            "{file}"
        );
    }
}

/// A greedy generation through the engine: the tokens and how many prompt tokens came from
/// the prefix cache.
fn engine_greedy(
    model: &cinder_core::LoadedModel,
    prompt: Vec<u32>,
    adapter: Option<std::sync::Arc<LoraWeights>>,
) -> (Vec<u32>, u32) {
    let mut request = crate::greedy_request(prompt, 8);
    request.adapter = adapter;
    let mut rx = model.engine.submit(request).expect("submitted");
    let mut got = Vec::new();
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            cinder_core::GenEvent::Delta { tokens, .. } => got.extend(tokens),
            cinder_core::GenEvent::Finished { cached_tokens, .. } => return (got, cached_tokens),
            cinder_core::GenEvent::Failed(e) => panic!("{e}"),
        }
    }
    panic!("the stream ended without finishing")
}

#[test]
fn the_engine_runs_adapted_sequences_beside_base_ones_without_sharing_their_cache() {
    use cinder_core::{BackendPreference, Llama};
    let model = crate::load_smollm2();
    let g = Gguf::open(&crate::smollm2_path()).expect("SmolLM2");
    let c = LlamaConfig::from_gguf(&g).expect("config");
    let adapter = std::sync::Arc::new(random_adapter(&c, 4, 9));
    let prompt = model
        .tokenizer
        .encode("Once upon a time, in a small village,", false)
        .expect("ids");
    // The base model first, so that its blocks are in the prefix cache.
    let (base, _) = engine_greedy(&model, prompt.clone(), None);
    let (again, cached) = engine_greedy(&model, prompt.clone(), None);
    assert_eq!(base, again);
    assert!(cached > 0, "the base model's prompt is reused");
    let (adapted, cached) = engine_greedy(&model, prompt.clone(), Some(adapter.clone()));
    assert_eq!(cached, 0, "an adapted sequence reads no base blocks");
    assert_ne!(adapted, base, "the adapter changes the answer");
    // The same greedy loop by hand on the model with the adapter.
    let (cpu, _) = Llama::load(&g, BackendPreference::Cpu, 2, |_, _| {}).expect("cpu");
    let mut cache = cpu.new_cache();
    let mut input = prompt.clone();
    let mut by_hand = Vec::new();
    for _ in 0..adapted.len() {
        let mut logits = Vec::new();
        cpu.forward_adapted_into(
            &mut [(&input[..], &mut cache)],
            &[Some(&*adapter)],
            &mut logits,
        )
        .expect("forward");
        let next = cinder_core::argmax(&logits);
        by_hand.push(next);
        input = vec![next];
    }
    assert_eq!(adapted, by_hand);
}

#[test]
fn a_peft_adapter_folder_reads_as_the_reference_and_round_trips() {
    let r = reference();
    let g = Gguf::open(&fixtures().join("hf/llama3")).expect("the folder");
    let arch = g.get_str("general.architecture").expect("arch").to_owned();
    let c = LlamaConfig::from_gguf(&g).expect("config");
    let read = cinder_core::read_peft(&fixtures().join("lora/peft-adapter"), &c, &arch)
        .expect("PEFT's files");
    assert_eq!((read.config.rank, read.config.alpha), (4, 8.0));
    assert_eq!(read.config.targets.len(), 7);
    // The same values as the reference's, in the model's row order.
    for m in r["adapters"].as_array().unwrap() {
        let layer = m["layer"].as_u64().unwrap() as usize;
        let target = LoraTarget::from_module_name(m["module"].as_str().unwrap()).unwrap();
        let pair = &read.pairs[&(layer, target)];
        let mut want = floats(&m["value"]);
        let got = match m["matrix"].as_str().unwrap() {
            "A" => &pair.a,
            _ => {
                if let Some(heads) = permuted_heads(&arch, &c, target) {
                    want = hf_rows_to_gguf(&want, heads, 4);
                }
                &pair.b
            }
        };
        assert_eq!(got, &want, "layer {layer} {target:?}");
    }
    // Served, it gives PEFT's logits.
    let trainer = LoraTrainer::new(&g, read.clone(), TrainSettings::default()).expect("trainer");
    let tokens: Vec<u32> = r["sequences"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect();
    let d = max_diff(
        &trainer.last_logits(&tokens).unwrap(),
        &floats(&r["last_logits"][0]),
    );
    assert!(d < 1e-4, "{d}");
    // Written and read back: the same adapter.
    let dir = std::env::temp_dir().join(format!("cinder-peft-{}", std::process::id()));
    cinder_core::write_peft(&read, &dir, &c, &arch, "tiny-llama3").expect("written");
    let back = cinder_core::read_peft(&dir, &c, &arch).expect("read back");
    assert_eq!(back, read);
    // What Cinder cannot serve is refused by name.
    let cfg_path = dir.join("adapter_config.json");
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["use_dora"] = Value::Bool(true);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let e = cinder_core::read_peft(&dir, &c, &arch).expect_err("DoRA");
    assert!(e.to_string().contains("use_dora"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_tenants_adapter_is_theirs_alone_and_must_fit_its_base() {
    let spec = cinder_core::ModelSpec {
        id: "tiny".into(),
        path: fixtures().join("hf/llama3"),
        backend: cinder_core::BackendPreference::Cpu,
        threads: Some(1),
        prefix_cache_mib: None,
        embeddings: false,
        raw_control_tokens: false,
        engine: Default::default(),
        q8_decode: false,
        q8_products: false,
        image: Default::default(),
    };
    let reg = cinder_core::ModelRegistry::load_all(&[spec]).expect("registry");
    let g = Gguf::open(&fixtures().join("hf/llama3")).expect("folder");
    let c = LlamaConfig::from_gguf(&g).expect("config");
    let a = random_adapter(&c, 2, 4);
    let made = reg
        .add_adapter("ft:tiny:alice:x", "tiny", a.clone(), Some("alice"))
        .expect("added");
    assert_eq!(made.base, "tiny");
    assert_ne!(
        made.info.fingerprint,
        reg.get("tiny").unwrap().info.fingerprint
    );
    assert!(reg.adapter("ft:tiny:alice:x", "alice").is_some());
    assert!(
        reg.adapter("ft:tiny:alice:x", "bob").is_none(),
        "another tenant's"
    );
    assert_eq!(reg.adapters_for("bob").len(), 0);
    assert!(
        reg.add_adapter("ft:tiny:alice:x", "tiny", a.clone(), Some("bob"))
            .is_err(),
        "a taken id"
    );
    assert!(
        reg.add_adapter("tiny", "tiny", a.clone(), None).is_err(),
        "a model's id"
    );
    let mut misfit = a.clone();
    misfit.pairs.values_mut().next().unwrap().a.pop();
    let e = reg
        .add_adapter("y", "tiny", misfit, None)
        .expect_err("a matrix of the wrong size");
    assert!(e.to_string().contains("the model needs"), "{e}");
    assert!(!reg.remove_adapter("ft:tiny:alice:x", "bob"));
    assert!(reg.remove_adapter("ft:tiny:alice:x", "alice"));
    assert!(reg.adapter("ft:tiny:alice:x", "alice").is_none());
}
