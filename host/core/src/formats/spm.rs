//! SentencePiece vocabularies as GGUF stores them (`tokenizer.ggml.model = llama`: Gemma,
//! Llama 2, Mistral, Phi-3): pieces with scores, no merge list, `▁` for a space and `<0xXX>`
//! pieces for bytes no piece covers.
//!
//! Written here rather than taken from the `tokenizers` crate: its BPE needs a merge list and
//! its Unigram model segments by a different rule (Viterbi over piece log-probabilities),
//! while the ids must equal llama.cpp's, which merges the adjacent pair whose joined text is
//! the highest-scoring piece, again and again (`llm_tokenizer_spm` in llama.cpp). Special
//! tokens are split out first, as llama.cpp does: user-defined pieces always (Gemma's runs of
//! spaces, tabs and newlines), control tokens only when the caller parses them.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use aho_corasick::{AhoCorasick, MatchKind};

use crate::error::CoreError;

/// GGUF `tokenizer.ggml.token_type` values.
pub(crate) const TYPE_NORMAL: i64 = 1;
pub(crate) const TYPE_UNKNOWN: i64 = 2;
pub(crate) const TYPE_CONTROL: i64 = 3;
pub(crate) const TYPE_USER_DEFINED: i64 = 4;
pub(crate) const TYPE_UNUSED: i64 = 5;
pub(crate) const TYPE_BYTE: i64 = 6;

/// SentencePiece's visible space.
const SPACE: &str = "\u{2581}";

/// Special-token texts and the ids they stand for, matched longest first.
struct Specials {
    finder: AhoCorasick,
    ids: Vec<u32>,
}

impl Specials {
    fn new(pieces: Vec<(&str, u32)>) -> Result<Option<Self>, CoreError> {
        if pieces.is_empty() {
            return Ok(None);
        }
        let finder = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(pieces.iter().map(|(t, _)| t))
            .map_err(|e| CoreError::Tokenizer(e.to_string()))?;
        Ok(Some(Specials {
            finder,
            ids: pieces.iter().map(|(_, id)| *id).collect(),
        }))
    }
}

/// A SentencePiece vocabulary, ready to encode.
pub(crate) struct Spm {
    /// Every piece text that merging may produce (control tokens excluded: user text that
    /// spells `<bos>` stays text).
    ids: HashMap<String, u32>,
    scores: Vec<f32>,
    bytes: [Option<u32>; 256],
    unknown: Option<u32>,
    add_space_prefix: bool,
    /// User-defined and control pieces.
    all_specials: Option<Specials>,
    /// User-defined pieces only.
    user_defined: Option<Specials>,
    /// Special pieces that swallow the whitespace after them ([`Spm::set_rstrip`]).
    rstrip: std::collections::HashSet<u32>,
}

/// One run of text in the merge: `len` bytes from `start`, linked to its neighbours.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of two adjacent symbols.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// The highest score first; among equal scores, the leftmost.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl Spm {
    pub(crate) fn new(
        tokens: &[String],
        scores: &[f32],
        types: &[i64],
        add_space_prefix: bool,
    ) -> Result<Self, CoreError> {
        let mut ids = HashMap::with_capacity(tokens.len());
        let mut bytes = [None; 256];
        let mut unknown = None;
        let (mut all, mut user) = (Vec::new(), Vec::new());
        for (i, (text, &ty)) in tokens.iter().zip(types).enumerate() {
            let id = i as u32;
            match ty {
                TYPE_CONTROL => all.push((text.as_str(), id)),
                TYPE_USER_DEFINED => {
                    all.push((text.as_str(), id));
                    user.push((text.as_str(), id));
                }
                TYPE_UNKNOWN => unknown = Some(id),
                TYPE_BYTE => {
                    if let Some(b) = byte_piece(text) {
                        bytes[b as usize] = Some(id);
                    }
                }
                _ => {}
            }
            if ty != TYPE_CONTROL {
                ids.entry(text.clone()).or_insert(id);
            }
        }
        let mut scores = scores.to_vec();
        scores.resize(tokens.len(), 0.0);
        Ok(Spm {
            ids,
            scores,
            bytes,
            unknown,
            add_space_prefix,
            all_specials: Specials::new(all)?,
            user_defined: Specials::new(user)?,
            rstrip: Default::default(),
        })
    }

    /// Special pieces after which whitespace is dropped (llama.cpp's `rstrip` attribute:
    /// Phi-3's turn tokens).
    pub(crate) fn set_rstrip(&mut self, ids: std::collections::HashSet<u32>) {
        self.rstrip = ids;
    }

    /// Text to ids, special pieces first (control tokens only with `parse_special`).
    pub(crate) fn encode(&self, text: &str, parse_special: bool) -> Vec<u32> {
        let specials = if parse_special {
            &self.all_specials
        } else {
            &self.user_defined
        };
        let mut out = Vec::new();
        // llama.cpp adds the space prefix at the start and after every special token.
        let mut after_special = true;
        let mut at = 0;
        if let Some(s) = specials {
            for m in s.finder.find_iter(text) {
                // Inside whitespace a special before it swallowed.
                if m.start() < at {
                    continue;
                }
                if m.start() > at {
                    self.encode_raw(&text[at..m.start()], after_special, &mut out);
                }
                let id = s.ids[m.pattern().as_usize()];
                out.push(id);
                after_special = true;
                at = m.end();
                if self.rstrip.contains(&id) {
                    // ASCII whitespace, as llama.cpp's `isspace`.
                    let rest = &text.as_bytes()[at..];
                    at += rest
                        .iter()
                        .take_while(|b| b.is_ascii_whitespace() || **b == 0x0b)
                        .count();
                }
            }
        }
        if at < text.len() {
            self.encode_raw(&text[at..], after_special, &mut out);
        }
        out
    }

    /// Text without special pieces: spaces made visible, then the highest-scoring adjacent
    /// pair merged until none joins into a piece; what stays unmerged and is no piece goes
    /// out as byte pieces.
    fn encode_raw(&self, raw: &str, after_special: bool, out: &mut Vec<u32>) {
        let prefix = if self.add_space_prefix && after_special {
            " "
        } else {
            ""
        };
        let text = format!("{prefix}{raw}").replace(' ', SPACE);
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        for (i, (start, c)) in text.char_indices().enumerate() {
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: Some(i + 1),
            });
        }
        if let Some(last) = symbols.last_mut() {
            last.next = None;
        }
        let mut queue = BinaryHeap::new();
        let candidate = |symbols: &[Symbol], left: Option<usize>, right: Option<usize>| {
            let (l, r) = (left?, right?);
            let (a, b) = (symbols[l], symbols[r]);
            let joined = &text[a.start..b.start + b.len];
            let id = *self.ids.get(joined)?;
            Some(Bigram {
                score: self.scores[id as usize],
                left: l,
                right: r,
                len: joined.len(),
            })
        };
        for i in 1..symbols.len() {
            queue.extend(candidate(&symbols, Some(i - 1), Some(i)));
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (symbols[b.left], symbols[b.right]);
            // Stale: one side merged since this pair was queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != b.len {
                continue;
            }
            symbols[b.left].len += r.len;
            symbols[b.right].len = 0;
            symbols[b.left].next = r.next;
            if let Some(n) = r.next {
                symbols[n].prev = Some(b.left);
            }
            queue.extend(candidate(&symbols, l.prev, Some(b.left)));
            queue.extend(candidate(&symbols, Some(b.left), r.next));
        }
        let mut i = (!symbols.is_empty()).then_some(0);
        while let Some(at) = i {
            let s = symbols[at];
            let piece = &text[s.start..s.start + s.len];
            match self.ids.get(piece) {
                Some(&id) => out.push(id),
                None => out.extend(
                    piece
                        .bytes()
                        .filter_map(|b| self.bytes[b as usize].or(self.unknown)),
                ),
            }
            i = s.next;
        }
    }
}

/// The byte a `<0xXX>` piece stands for.
pub(crate) fn byte_piece(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    (hex.len() == 2)
        .then(|| u8::from_str_radix(hex, 16).ok())
        .flatten()
}

/// The bytes a piece prints, as llama.cpp's detokenizer gives them: `▁` as a space, byte
/// pieces as their byte, user-defined pieces as written; control and unused pieces print
/// nothing.
pub(crate) fn piece_bytes(text: &str, ty: i64) -> Vec<u8> {
    match ty {
        TYPE_NORMAL => text.replace(SPACE, " ").into_bytes(),
        TYPE_USER_DEFINED => text.as_bytes().to_vec(),
        TYPE_BYTE => byte_piece(text).map(|b| vec![b]).unwrap_or_default(),
        TYPE_UNKNOWN => "\u{2585}".as_bytes().to_vec(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vocabulary where "ab" outscores "bc", so "abc" merges as "ab" + "c".
    fn vocab() -> Spm {
        let pieces = [
            ("<unk>", 0.0, TYPE_UNKNOWN),
            ("<bos>", 0.0, TYPE_CONTROL),
            ("<0x41>", 0.0, TYPE_BYTE),
            ("<0xC3>", 0.0, TYPE_BYTE),
            ("<0xA9>", 0.0, TYPE_BYTE),
            ("a", -1.0, TYPE_NORMAL),
            ("b", -1.0, TYPE_NORMAL),
            ("c", -1.0, TYPE_NORMAL),
            ("ab", -2.0, TYPE_NORMAL),
            ("bc", -3.0, TYPE_NORMAL),
            ("\u{2581}a", -2.5, TYPE_NORMAL),
            ("\u{2581}", -1.0, TYPE_NORMAL),
            ("\n\n", 0.0, TYPE_USER_DEFINED),
            ("<b", -0.5, TYPE_NORMAL),
            ("o", -1.0, TYPE_NORMAL),
            ("s", -1.0, TYPE_NORMAL),
            (">", -1.0, TYPE_NORMAL),
        ];
        let tokens: Vec<String> = pieces.iter().map(|p| p.0.to_owned()).collect();
        let scores: Vec<f32> = pieces.iter().map(|p| p.1).collect();
        let types: Vec<i64> = pieces.iter().map(|p| p.2).collect();
        Spm::new(&tokens, &scores, &types, false).expect("vocab")
    }

    #[test]
    fn merges_the_best_scoring_pair_first() {
        let v = vocab();
        assert_eq!(v.encode("abc", false), vec![8, 7]);
        assert_eq!(v.encode("bc", false), vec![9]);
        assert_eq!(v.encode("c a", false), vec![7, 10]);
    }

    #[test]
    fn unknown_characters_fall_back_to_bytes() {
        let v = vocab();
        // "é" is C3 A9; "A" has a byte piece; "Z" has none and becomes <unk>.
        assert_eq!(v.encode("éAZ", false), vec![3, 4, 2, 0]);
    }

    #[test]
    fn special_pieces_split_first() {
        let v = vocab();
        assert_eq!(v.encode("a\n\nb", false), vec![5, 12, 6]);
        assert_eq!(v.encode("<bos>a", true), vec![1, 5]);
        // Unparsed, control-token text is text and never merges into the control token.
        assert_eq!(v.encode("<bos>", false), vec![13, 14, 15, 16]);
    }

    #[test]
    fn space_prefix_after_specials_when_asked() {
        let mut v = vocab();
        v.add_space_prefix = true;
        assert_eq!(v.encode("a", false), vec![10]);
        assert_eq!(v.encode("a\n\na", false), vec![10, 12, 10]);
    }

    #[test]
    fn pieces_print_like_llama_cpp() {
        assert_eq!(piece_bytes("\u{2581}hi", TYPE_NORMAL), b" hi");
        assert_eq!(piece_bytes("<0x0A>", TYPE_BYTE), b"\n");
        assert_eq!(piece_bytes("<eos>", TYPE_CONTROL), b"");
        assert_eq!(piece_bytes("  ", TYPE_USER_DEFINED), b"  ");
    }
}
