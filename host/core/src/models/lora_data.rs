//! A chat training example (a line of OpenAI's fine-tuning format: `messages`, optional
//! `tools`) as the tokens a model reads and which of them the loss counts: the model's own
//! chat template renders the conversation, and each assistant message that is trained on
//! (no `weight`, or `weight: 1`) marks the tokens its turn adds (its text and the template's
//! end of turn), found by rendering the conversation up to it with and without it.

use serde_json::Value;

use crate::error::CoreError;
use crate::formats::template::ChatTemplate;
use crate::formats::tokenizer::Tokenizer;
use crate::models::lora_train::Example;

fn rejected(message: String) -> CoreError {
    CoreError::Adapter(message)
}

/// `line`'s conversation as tokens and answer flags, at most `max_tokens` tokens.
pub fn chat_example(
    template: &ChatTemplate,
    tokenizer: &Tokenizer,
    line: &Value,
    max_tokens: usize,
) -> Result<Example, CoreError> {
    let messages = line
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| rejected("the example has no `messages` array".into()))?;
    let tools = line.get("tools").filter(|t| !t.is_null());
    let tokens_of = |upto: usize, generation: bool| -> Result<Vec<u32>, CoreError> {
        let shown = Value::Array(messages[..upto].to_vec());
        let text = template.render_json(&shown, tools, generation)?;
        tokenizer.encode(&text, true)
    };
    let tokens = tokens_of(messages.len(), false)?;
    if tokens.len() > max_tokens {
        return Err(CoreError::ContextOverflow {
            tokens: tokens.len(),
            limit: max_tokens,
        });
    }
    let mut answer = vec![false; tokens.len()];
    for (i, m) in messages.iter().enumerate() {
        let trained = m.get("role").and_then(Value::as_str) == Some("assistant")
            && m.get("weight").is_none_or(|w| w != 0);
        if !trained {
            continue;
        }
        let before = tokens_of(i, true)?;
        let through = tokens_of(i + 1, false)?;
        let extends = through.starts_with(&before) && tokens.starts_with(&through);
        if !extends {
            return Err(rejected(format!(
                "the model's chat template does not render messages[{i}] as an extension of the messages before it, so its tokens cannot be told apart"
            )));
        }
        for flag in &mut answer[before.len()..through.len()] {
            *flag = true;
        }
    }
    Ok(Example { tokens, answer })
}
