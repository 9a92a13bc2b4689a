//! Prefix reuse on the CPU path: a request whose prompt starts like an earlier one starts
//! from that one's KV blocks, and its greedy continuation is still the reference's token for
//! token.

use cinder_core::{GenEvent, LoadedModel};

use crate::{greedy_request, ids, read_json};

/// Greedy generation of up to `max` tokens; returns the tokens and the cached prompt count.
fn greedy(model: &LoadedModel, prompt: Vec<u32>, max: u32) -> (Vec<u32>, u32) {
    let mut rx = model
        .engine
        .submit(greedy_request(prompt, max))
        .expect("submitted");
    let mut got = Vec::new();
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            GenEvent::Delta { tokens, .. } => got.extend(tokens),
            GenEvent::Finished { cached_tokens, .. } => return (got, cached_tokens),
            GenEvent::Failed(e) => panic!("{e}"),
        }
    }
    panic!("the stream ended without finishing")
}

#[test]
fn repeated_and_extended_prompts_reuse_blocks_and_still_match_the_reference() {
    let model = crate::load_smollm2();
    let r = read_json("smollm2/greedy.json");
    let max_new = r["max_new_tokens"].as_u64().expect("max_new_tokens") as u32;
    let prompts = r["transformers"]["prompts"].as_object().expect("prompts");
    for (name, p) in prompts {
        let prompt = ids(&p["prompt_ids"]);
        let want = ids(&p["ids"]);
        // First time: at most the system prompt of an earlier chat prompt is shared.
        let (first, _) = greedy(&model, prompt.clone(), max_new);
        assert_eq!(first, want, "{name}, first run");
        // Again: the first run froze a block per 16 positions it fed (its prompt and every
        // token but the last it sampled); all of those inside the prompt, bar its last
        // token, come back from the cache.
        let (again, cached) = greedy(&model, prompt.clone(), max_new);
        assert_eq!(again, want, "{name}, from cached blocks");
        let frozen = (prompt.len() + want.len() - 1) / 16 * 16;
        assert_eq!(cached as usize, frozen.min(prompt.len() - 1), "{name}");
    }
}

#[test]
fn a_follow_up_turn_starts_from_the_conversation_so_far() {
    let model = crate::load_smollm2();
    let first: Vec<u32> = model
        .tokenizer
        .encode(
            "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n",
            true,
        )
        .expect("encodes");
    let (reply, _) = greedy(&model, first.clone(), 40);
    // The next turn's prompt is the whole conversation: the history comes from the cache,
    // and the answer is what a fresh computation gives.
    let mut second = first.clone();
    second.extend(&reply);
    second.extend(
        model
            .tokenizer
            .encode(
                "<|im_end|>\n<|im_start|>user\nAnd three more?<|im_end|>\n<|im_start|>assistant\n",
                true,
            )
            .expect("encodes"),
    );
    let (with_cache, cached) = greedy(&model, second.clone(), 24);
    assert!(
        cached as usize >= (first.len() + reply.len()) / 16 * 16,
        "{cached} of {} cached",
        second.len()
    );
    let fresh = crate::load_smollm2_without_prefix_cache();
    let (without, none) = greedy(&fresh, second, 24);
    assert_eq!(none, 0);
    assert_eq!(with_cache, without);
}
