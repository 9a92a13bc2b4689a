//! Admission: the engine runs at most `max_running` sequences and only as many as fit its KV
//! budget; the rest wait holding no cache, are admitted fairly between requests (groups), and
//! past `max_waiting` a submission is refused as busy instead of queueing without end.

use cinder_core::{CoreError, EngineLimits, GenEvent, LoadedModel};
use tokio::sync::mpsc::Receiver;
use tokio::sync::mpsc::error::TryRecvError;

use crate::{greedy_request, load_smollm2_limited, story_request};

fn submit(model: &LoadedModel, group: u64, max_tokens: u32) -> Receiver<GenEvent> {
    let mut request = story_request(model, max_tokens);
    request.group = group;
    model.engine.submit(request).expect("submitted")
}

/// Blocks until `rx` has its first event; the tokens it carries.
fn first_event(rx: &mut Receiver<GenEvent>) -> usize {
    match rx.blocking_recv().expect("an event") {
        GenEvent::Delta { tokens, .. } => tokens.len(),
        GenEvent::Finished { .. } => 0,
        GenEvent::Failed(e) => panic!("failed: {e}"),
    }
}

/// Whether `rx` already holds its `Finished`, without waiting.
fn finished_already(rx: &mut Receiver<GenEvent>) -> bool {
    loop {
        match rx.try_recv() {
            Ok(GenEvent::Finished { .. }) => return true,
            Ok(GenEvent::Failed(e)) => panic!("failed: {e}"),
            Ok(GenEvent::Delta { .. }) => continue,
            Err(_) => return false,
        }
    }
}

/// Reads to the end; the number of tokens generated.
fn finish(rx: &mut Receiver<GenEvent>) -> usize {
    let mut n = 0;
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            GenEvent::Delta { tokens, .. } => n += tokens.len(),
            GenEvent::Finished { .. } => return n,
            GenEvent::Failed(e) => panic!("failed: {e}"),
        }
    }
    panic!("closed without finishing")
}

fn limits(max_running: usize, max_kv_bytes: usize, max_waiting: usize) -> EngineLimits {
    EngineLimits {
        max_running,
        max_kv_bytes,
        max_waiting,
        ..EngineLimits::default()
    }
}

#[test]
fn past_max_running_a_sequence_waits_for_a_free_slot() {
    let model = load_smollm2_limited(limits(1, usize::MAX, 16));
    let mut long = submit(&model, 1, 24);
    let mut short = submit(&model, 2, 2);
    // With both running the short one would be done long before; here it starts only after
    // the first has finished (its events were sent before the second's first token).
    let head = first_event(&mut short);
    assert!(
        finished_already(&mut long),
        "the second ran beside the first"
    );
    assert_eq!(head + finish(&mut short), 2);
}

#[test]
fn past_the_kv_budget_a_sequence_waits_and_a_lone_one_always_runs() {
    // SmolLM2: 30 layers x 3 KV heads x 64 dims x (K, V) x 4 bytes per position. A budget of
    // 40 positions holds one sequence of 4 prompt + 24 tokens, not two.
    let per_token = 30 * 3 * 64 * 2 * 4;
    let model = load_smollm2_limited(limits(64, 40 * per_token, 16));
    let mut first = submit(&model, 1, 24);
    let mut second = submit(&model, 2, 24);
    let head = first_event(&mut second);
    assert!(finished_already(&mut first), "both fit in the budget");
    assert_eq!(head + finish(&mut second), 24);
    // Larger than the whole budget, alone: it runs rather than waiting for ever.
    assert_eq!(finish(&mut submit(&model, 3, 64)), 64);
}

#[test]
fn past_max_waiting_a_submission_is_refused_as_busy() {
    let model = load_smollm2_limited(limits(1, usize::MAX, 1));
    let mut running = submit(&model, 1, 400);
    first_event(&mut running); // admitted: no longer waiting
    let mut queued = submit(&model, 2, 4);
    let refused = model.engine.submit(greedy_request(vec![1, 2, 3], 4));
    assert!(
        matches!(refused, Err(CoreError::Busy(_))),
        "expected busy, got {:?}",
        refused.map(|_| ())
    );
    // The client of the running one leaves: the queued one runs, and there is room again.
    drop(running);
    assert_eq!(finish(&mut queued), 4);
    assert_eq!(finish(&mut submit(&model, 3, 4)), 4);
}

#[test]
fn a_client_that_leaves_while_waiting_gives_its_place_back() {
    let model = load_smollm2_limited(limits(1, usize::MAX, 1));
    let mut running = submit(&model, 1, 48);
    let head = first_event(&mut running);
    drop(submit(&model, 2, 4)); // waits, then its client goes
    assert_eq!(head + finish(&mut running), 48);
    // The place it held is free again once the engine has looked at the queue.
    assert_eq!(finish(&mut submit(&model, 3, 4)), 4);
}

#[test]
fn admission_is_fair_between_requests() {
    let model = load_smollm2_limited(limits(2, usize::MAX, 16));
    // Request 1 has four choices, request 2 one, arriving last. When the first of request 1's
    // choices ends, request 2 (none running) goes before request 1's third (one running).
    let mut a1 = submit(&model, 1, 3);
    let mut a2 = submit(&model, 1, 60);
    let mut a3 = submit(&model, 1, 16);
    let mut a4 = submit(&model, 1, 16);
    let mut b1 = submit(&model, 2, 16);
    let head = first_event(&mut b1);
    assert!(
        matches!(a3.try_recv(), Err(TryRecvError::Empty)),
        "request 1's third choice ran before request 2"
    );
    assert_eq!(head + finish(&mut b1), 16);
    for (rx, n) in [(&mut a1, 3), (&mut a2, 60), (&mut a3, 16), (&mut a4, 16)] {
        assert_eq!(finish(rx), n);
    }
}

#[test]
fn a_waiting_sequence_runs_when_every_running_one_sits_unread() {
    // A reader that waits for the second choice before reading the first (plugins built
    // before WIT 0.1.5 read choices in turn): the first fills its channel and pauses holding
    // the only slot. The engine admits the second past the cap instead of stalling both.
    let model = load_smollm2_limited(limits(1, usize::MAX, 16));
    let mut unread = submit(&model, 1, 200);
    let mut second = submit(&model, 1, 4);
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let _ = tx.send(finish(&mut second));
    });
    let got = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the second sequence ran while the first sat unread");
    assert_eq!(got, 4);
    reader.join().expect("reader");
    assert_eq!(finish(&mut unread), 200);
}

#[test]
fn background_work_waits_behind_live_requests_and_keeps_to_half_the_slots() {
    let model = load_smollm2_limited(limits(2, usize::MAX, 16));
    let background = |group| {
        let mut request = story_request(&model, 24);
        request.group = group;
        request.background = true;
        model.engine.submit(request).expect("submitted")
    };
    let mut first = background(1);
    let mut second = background(2);
    let mut live = submit(&model, 3, 2);
    // Two slots: one for background work, so the live request runs beside the first batch
    // request at once (and is done long before it) while the second waits for a slot.
    assert_eq!(finish(&mut live), 2);
    assert!(
        !finished_already(&mut first),
        "live work waited for background work"
    );
    let head = first_event(&mut second);
    assert!(
        finished_already(&mut first),
        "background work took more than half the slots"
    );
    assert_eq!(head + finish(&mut second), 24);
}

/// Every token of a generation, in order.
fn tokens(rx: &mut Receiver<GenEvent>) -> Vec<u32> {
    let mut out = Vec::new();
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            GenEvent::Delta { tokens, .. } => out.extend(tokens),
            GenEvent::Finished { .. } => return out,
            GenEvent::Failed(e) => panic!("failed: {e}"),
        }
    }
    panic!("closed without finishing")
}

#[test]
fn a_background_sequence_stopped_again_and_again_for_live_work_says_the_same() {
    let model = load_smollm2_limited(limits(8, usize::MAX, 64));
    // A prompt of several background prefill chunks, then a greedy answer.
    let text = "The lighthouse keeper counted the ships that passed each night. ".repeat(12);
    let prompt = model.tokenizer.encode(&text, false).expect("encodes");
    assert!(prompt.len() > 128, "{} tokens", prompt.len());
    let background = || {
        let mut request = crate::greedy_request(prompt.clone(), 40);
        request.background = true;
        model.engine.submit(request).expect("submitted")
    };
    let alone = tokens(&mut background());
    assert_eq!(alone.len(), 40);
    // Live requests keep arriving while it runs: each stops the background step under way
    // (between layers), which must leave its cache as it was.
    let mut run = background();
    let mut lives = 0;
    let mut got = Vec::new();
    loop {
        match run.try_recv() {
            Ok(GenEvent::Delta { tokens, .. }) => got.extend(tokens),
            Ok(GenEvent::Finished { .. }) => break,
            Ok(GenEvent::Failed(e)) => panic!("failed: {e}"),
            Err(TryRecvError::Empty) => {
                assert_eq!(finish(&mut submit(&model, 100 + lives, 1)), 1);
                lives += 1;
            }
            Err(TryRecvError::Disconnected) => panic!("closed without finishing"),
        }
    }
    assert!(lives >= 10, "only {lives} live requests ran beside it");
    assert!(
        model.engine.preemptions() > 0,
        "no background step was stopped"
    );
    assert_eq!(got, alone);
}

/// A live request is counted as live work (which other models' batches sleep for) from its
/// submission to its first token, not to its end; a batch's request never is.
#[test]
fn a_live_request_counts_as_live_work_until_its_first_token_only() {
    let model = load_smollm2_limited(EngineLimits::default());
    assert_eq!(model.engine.live_waiting(), 0);
    let mut live = model
        .engine
        .submit(story_request(&model, 40))
        .expect("submitted");
    first_event(&mut live);
    // The first token is out (the rest still streams): no longer counted.
    let mut waited = 0;
    while model.engine.live_waiting() != 0 && waited < 100 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        waited += 1;
    }
    assert_eq!(model.engine.live_waiting(), 0);
    assert!(
        !finished_already(&mut live),
        "40 tokens take more than one step"
    );
    let mut request = story_request(&model, 8);
    request.background = true;
    let mut batch = model.engine.submit(request).expect("submitted");
    assert_eq!(
        model.engine.live_waiting(),
        0,
        "a batch's request is not live work"
    );
    finish(&mut batch);
    finish(&mut live);
    // A live request whose client leaves before its first token stops counting too.
    drop(
        model
            .engine
            .submit(story_request(&model, 8))
            .expect("submitted"),
    );
    let mut waited = 0;
    while model.engine.live_waiting() != 0 && waited < 200 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        waited += 1;
    }
    assert_eq!(model.engine.live_waiting(), 0);
}
