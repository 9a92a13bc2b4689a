//! Chat completions exactly as Cinder's own plugin serves them, except that no digit ever
//! reaches the client: each one is replaced by `#` (account numbers, phone numbers, codes).
//! Everything else (streaming, n, stop, logprobs, errors) is the SDK's default behaviour.

use cinder_sdk::chat::Chat;

#[derive(Default)]
struct Redact;

impl Chat for Redact {
    fn rewrite(&self, _choice: u32, text: String) -> String {
        mask_digits(&text)
    }
}

fn mask_digits(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

cinder_sdk::export_chat!(Redact);

#[cfg(test)]
mod tests {
    use cinder_sdk::chat::Chat;
    use cinder_sdk::testing::{FakeHost, post};
    use serde_json::json;

    #[test]
    fn digits_are_masked_and_nothing_else() {
        assert_eq!(
            super::mask_digits("call 555-0199, ok?"),
            "call ###-####, ok?"
        );
    }

    #[test]
    fn the_whole_chat_pipeline_masks_digits() {
        let host = FakeHost::new("m").generating(&["call ", "555", "-01"]);
        let request = post(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}));
        super::Redact.complete(request, &host).unwrap();
        let (status, body) = host.response().unwrap();
        assert_eq!(status, 200);
        assert_eq!(body["choices"][0]["message"]["content"], "call ###-##");
    }
}
