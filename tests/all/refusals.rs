//! The core refuses in its own terms: typed errors about tokens, prompts and sampling, with
//! no request parameter and no HTTP in them (the plugin names the parameter, the server the
//! status). And an empty stop string stops nothing here, as on every path above.

use cinder_core::{CoreError, GenEvent, LoadedModel, SamplingField};
use tokio::sync::mpsc::Receiver;

use crate::{greedy_request, story_request};

fn text_of(mut rx: Receiver<GenEvent>) -> String {
    let mut text = String::new();
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            GenEvent::Delta { text: t, .. } => text.push_str(&t),
            GenEvent::Finished { .. } => return text,
            GenEvent::Failed(e) => panic!("failed: {e}"),
        }
    }
    panic!("closed without finishing")
}

fn refusal(model: &LoadedModel, edit: impl FnOnce(&mut cinder_core::GenerateRequest)) -> CoreError {
    let mut request = story_request(model, 4);
    edit(&mut request);
    match model.engine.submit(request) {
        Err(e) => e,
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn each_mistake_is_its_own_typed_refusal() {
    let model = crate::load_smollm2();
    let context = model.engine.context_length();
    match refusal(&model, |r| r.prompt = vec![1; context]) {
        CoreError::ContextOverflow { tokens, limit } => {
            assert_eq!((tokens, limit), (context, context))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        refusal(&model, |r| r.prompt.clear()),
        CoreError::EmptyPrompt
    ));
    assert!(matches!(
        refusal(&model, |r| r.prompt.push(u32::MAX)),
        CoreError::OutOfVocabulary { token: u32::MAX }
    ));
    assert!(matches!(
        refusal(&model, |r| r.sampling.top_p = 0.0),
        CoreError::InvalidSampling {
            field: SamplingField::TopP,
            ..
        }
    ));
    assert!(matches!(
        refusal(&model, |r| r.sampling.temperature = f32::NAN),
        CoreError::InvalidSampling {
            field: SamplingField::Temperature,
            ..
        }
    ));
    assert!(matches!(
        refusal(&model, |r| r.max_tokens = Some(0)),
        CoreError::NoTokensAllowed
    ));
    assert!(matches!(
        refusal(&model, |r| r.top_logprobs = Some(21)),
        CoreError::TooManyAlternatives { asked: 21, max: 20 }
    ));
    assert!(matches!(
        refusal(&model, |r| r.stop = vec!["a".into(); 5]),
        CoreError::TooManyStops { count: 5, max: 4 }
    ));
    for e in [
        refusal(&model, |r| r.prompt = vec![1; context]),
        refusal(&model, |r| r.sampling.top_p = 0.0),
    ] {
        assert!(e.is_callers(), "{e:?}");
        // The core's words never borrow OpenAI's parameter names.
        let said = e.to_string();
        for openai in ["messages", "max_completion_tokens", "response_format"] {
            assert!(!said.contains(openai), "{said}");
        }
    }
}

#[test]
fn an_empty_stop_string_stops_nothing() {
    let model = crate::load_smollm2();
    let prompt = model
        .tokenizer
        .encode("Once upon a time", false)
        .expect("encodes");
    let plain = text_of(
        model
            .engine
            .submit(greedy_request(prompt.clone(), 6))
            .expect("ok"),
    );
    assert!(!plain.is_empty());
    for stop in [
        vec![String::new()],
        vec![String::new(), "never-said".into()],
    ] {
        let mut request = greedy_request(prompt.clone(), 6);
        request.stop = stop;
        assert_eq!(
            text_of(model.engine.submit(request).expect("accepted")),
            plain
        );
    }
}
