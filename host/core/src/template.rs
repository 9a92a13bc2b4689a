//! Chat templates: the model's own Jinja template (from its weights file), rendered with
//! minijinja the way Python's jinja2 does for transformers and llama-cpp-python
//! (`trim_blocks`, `lstrip_blocks`, loop controls, Python string methods).

use minijinja::{Environment, ErrorKind, context};
use serde::Serialize;

use crate::error::CoreError;
use crate::gguf::{Gguf, Value};
use crate::tokenizer::Tokenizer;

/// One message as templates expect it.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateMessage {
    pub role: String,
    pub content: String,
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

const NAME: &str = "chat";

impl ChatTemplate {
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, CoreError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template_owned(NAME, source.to_owned())
            .map_err(|e| {
                CoreError::Template(format!("the model's chat template does not compile: {e}"))
            })?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        })
    }

    /// The template stored in a GGUF (`tokenizer.chat_template`), with its BOS/EOS texts.
    pub fn from_gguf(gguf: &Gguf, tokenizer: &Tokenizer) -> Result<Self, CoreError> {
        let token_text = |id: Option<u32>| -> String {
            let tokens = gguf.get("tokenizer.ggml.tokens").and_then(Value::as_array);
            id.and_then(|i| tokens?.get(i as usize)?.as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        let source = gguf.get_str("tokenizer.chat_template")?;
        Self::new(
            source,
            &token_text(tokenizer.bos_id),
            &token_text(tokenizer.eos_id),
        )
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends where the assistant's
    /// answer starts.
    pub fn render(
        &self,
        messages: &[TemplateMessage],
        add_generation_prompt: bool,
    ) -> Result<String, CoreError> {
        let tmpl = self
            .env
            .get_template(NAME)
            .map_err(|e| CoreError::Template(e.to_string()))?;
        tmpl.render(context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        })
        .map_err(|e| match e.kind() {
            // The template refused these messages (e.g. roles out of order): the client's mistake.
            ErrorKind::InvalidOperation => CoreError::invalid(
                format!(
                    "the model's chat template rejected the messages: {}",
                    e.detail().unwrap_or("")
                ),
                "messages",
            ),
            _ => CoreError::Template(e.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_exception_is_a_client_error() {
        let t = ChatTemplate::new(
            "{% if messages[0].role != 'user' %}{{ raise_exception('user first') }}{% endif %}ok",
            "",
            "",
        )
        .unwrap();
        let m = |r: &str| TemplateMessage {
            role: r.into(),
            content: "x".into(),
        };
        assert_eq!(t.render(&[m("user")], true).unwrap(), "ok");
        assert!(matches!(
            t.render(&[m("tool")], true),
            Err(CoreError::InvalidRequest { .. })
        ));
    }

    #[test]
    fn python_methods_and_trim_blocks() {
        let t = ChatTemplate::new(
            "{% for m in messages %}\n{{ m.content.strip() }}|{% endfor %}",
            "",
            "",
        )
        .unwrap();
        let msgs = [TemplateMessage {
            role: "user".into(),
            content: "  hi  ".into(),
        }];
        assert_eq!(t.render(&msgs, false).unwrap(), "hi|");
    }
}
