//! Faults inside the engine (built with `fault-injection`, tests only): a panic in one
//! sequence's per-token work fails that sequence alone; a panic that escapes every guard fails
//! the work in flight and the engine starts again, instead of every later request getting a
//! 503 until the server restarts.

use cinder_core::{FAULT_IN_ADMISSION, FAULT_IN_TOKEN, GenEvent, LoadedModel};
use tokio::sync::mpsc::Receiver;

use crate::story_request;

/// How a generation ended: `Ok(tokens)` when finished, `Err(message)` when it failed, and
/// `Err("closed")` when the channel closed without a word.
fn outcome(rx: &mut Receiver<GenEvent>) -> Result<usize, String> {
    let mut tokens = 0;
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            GenEvent::Delta { tokens: t, .. } => tokens += t.len(),
            GenEvent::Finished { .. } => return Ok(tokens),
            GenEvent::Failed(e) => return Err(e.to_string()),
        }
    }
    Err("closed".into())
}

fn submit(model: &LoadedModel, max_tokens: u32, stop: &[&str]) -> Receiver<GenEvent> {
    let mut request = story_request(model, max_tokens);
    request.stop = stop.iter().map(|s| s.to_string()).collect();
    model.engine.submit(request).expect("submitted")
}

#[test]
fn a_panic_in_one_sequence_fails_only_that_sequence() {
    let model = crate::load_smollm2();
    let mut healthy = submit(&model, 24, &[]);
    let mut faulty = submit(&model, 24, &[FAULT_IN_TOKEN]);
    let err = outcome(&mut faulty).expect_err("the faulty sequence fails");
    assert!(err.contains("generating a token failed"), "{err}");
    assert_eq!(outcome(&mut healthy), Ok(24));
    assert_eq!(outcome(&mut submit(&model, 8, &[])), Ok(8));
}

#[test]
fn the_engine_starts_again_after_a_panic_outside_the_guards() {
    let model = crate::load_smollm2();
    // Running (its first token out) when the fault hits.
    let mut running = submit(&model, 500, &[]);
    assert!(matches!(
        running.blocking_recv(),
        Some(GenEvent::Delta { .. })
    ));
    let mut faulty = submit(&model, 8, &[FAULT_IN_ADMISSION]);
    let err = outcome(&mut running).expect_err("work in flight fails");
    assert!(err.contains("engine restarted"), "{err}");
    assert!(outcome(&mut faulty).is_err());
    // The same engine serves the next requests.
    assert_eq!(outcome(&mut submit(&model, 8, &[])), Ok(8));
    assert_eq!(outcome(&mut submit(&model, 8, &[])), Ok(8));
}
