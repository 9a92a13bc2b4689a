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
    #[test]
    fn digits_are_masked_and_nothing_else() {
        assert_eq!(
            super::mask_digits("call 555-0199, ok?"),
            "call ###-####, ok?"
        );
    }
}
