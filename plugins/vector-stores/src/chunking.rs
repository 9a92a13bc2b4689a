//! Cutting a text into chunks of so many tokens: windows over the embedding model's token
//! spans, each overlapping the one before by `overlap` tokens, each chunk a slice of the
//! original text (so what a search returns is what the file says, not a detokenized copy).

/// How a file's text is cut (OpenAI's `chunking_strategy`, made concrete).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunking {
    /// Tokens per chunk.
    pub max_tokens: u32,
    /// Tokens a chunk shares with the one before (at most half of `max_tokens`).
    pub overlap: u32,
}

/// OpenAI's `auto`: 800 tokens with 400 overlap, capped by what the embedding model reads
/// (`max_input` tokens, its two special tokens left out), the overlap half a chunk.
pub fn auto(max_input: u32) -> Chunking {
    let max_tokens = 800.min(max_input.saturating_sub(2)).max(1);
    Chunking {
        max_tokens,
        overlap: max_tokens / 2,
    }
}

/// The byte ranges of `text`'s chunks, given where its tokens lie (`spans`, in order).
pub fn cut(spans: &[(u32, u32)], c: Chunking) -> Vec<(usize, usize)> {
    let size = c.max_tokens.max(1) as usize;
    let stride = size.saturating_sub(c.overlap as usize).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < spans.len() {
        let end = (start + size).min(spans.len());
        out.push((spans[start].0 as usize, spans[end - 1].1 as usize));
        if end == spans.len() {
            break;
        }
        start += stride;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(n: u32) -> Vec<(u32, u32)> {
        (0..n).map(|i| (i * 2, i * 2 + 1)).collect()
    }

    #[test]
    fn windows_overlap_and_the_last_ends_at_the_text_end() {
        let c = Chunking {
            max_tokens: 4,
            overlap: 2,
        };
        assert_eq!(cut(&spans(7), c), [(0, 7), (4, 11), (8, 13)]);
        assert_eq!(cut(&spans(3), c), [(0, 5)]);
        assert!(cut(&[], c).is_empty());
        let none = Chunking {
            max_tokens: 3,
            overlap: 0,
        };
        assert_eq!(cut(&spans(6), none), [(0, 5), (6, 11)]);
    }

    #[test]
    fn auto_fits_the_embedding_model() {
        assert_eq!(
            auto(256),
            Chunking {
                max_tokens: 254,
                overlap: 127
            }
        );
        assert_eq!(
            auto(8192),
            Chunking {
                max_tokens: 800,
                overlap: 400
            }
        );
    }
}
