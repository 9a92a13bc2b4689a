//! Grammar-constrained decoding with llguidance: at every step, tokens the grammar cannot
//! accept next are masked out before sampling, so the output always parses (JSON object,
//! JSON schema, regex or Lark grammar). A model's token trie is built once, the first time
//! a constrained request arrives; each request gets its own matcher.

use std::sync::{Arc, OnceLock};

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};

use crate::engine::grammar_budget::GrammarLimits;
use crate::error::CoreError;
use crate::formats::tokenizer::Tokenizer;

/// The stack of the thread a grammar compiles on: llguidance's schema compiler recurses per
/// `$ref` hop and per property (~3 KB a level); the budget keeps a schema far below what
/// this holds, and only the pages used are touched.
const COMPILE_STACK: usize = 64 << 20;

/// What the output must match.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    /// Any JSON object (`response_format: json_object`).
    JsonObject,
    /// JSON valid against this schema (`response_format: json_schema`).
    JsonSchema(serde_json::Value),
    /// A regular expression over the whole output.
    Regex(String),
    /// A Lark grammar (llguidance's dialect).
    Lark(String),
}

/// A model's compiled vocabulary for grammars.
pub struct Grammars {
    factory: ParserFactory,
    limits: GrammarLimits,
}

/// Marks a token as special for llguidance (never matched by grammar text).
const SPECIAL: u8 = 0xFF;

impl Grammars {
    /// Builds the token trie of `tokenizer`'s vocabulary (~100 ms for 49k tokens), with the
    /// default bounds on what a grammar may contain.
    pub fn new(tokenizer: &Tokenizer) -> Result<Self, CoreError> {
        Self::with_limits(tokenizer, GrammarLimits::default())
    }

    /// The same under `limits`.
    pub fn with_limits(tokenizer: &Tokenizer, limits: GrammarLimits) -> Result<Self, CoreError> {
        let vocab = tokenizer.vocab_size() as u32;
        let words: Vec<Vec<u8>> = (0..vocab)
            .map(|id| match tokenizer.token_bytes(id) {
                // Control tokens print nothing: give them a unique special name.
                [] => [&[SPECIAL][..], format!("<|ctl{id}|>").as_bytes()].concat(),
                bytes => bytes.to_vec(),
            })
            .collect();
        let eos = tokenizer
            .eos_id
            .or_else(|| tokenizer.eog_ids.first().copied())
            .ok_or_else(|| CoreError::Tokenizer("no end-of-generation token".into()))?;
        let info = TokRxInfo::new(vocab, eos);
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(TokTrie::from(&info, &words)));
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|e| CoreError::Backend(format!("grammar engine: {e}")))?;
        factory.quiet();
        // Errors name the problem; the parser's state and the grammar stay out of them.
        factory.limits_mut().verbose_errors = false;
        Ok(Grammars { factory, limits })
    }

    /// A fresh matcher for `constraint`; a grammar the engine cannot support is refused
    /// ([`CoreError::GrammarRejected`]), decided here on the caller's thread before anything runs: one that does not
    /// compile, and one whose first step already fails or allows no token at all (a `$ref`
    /// cycle with no way out, an unsatisfiable schema). The message never carries the
    /// parser's internal state.
    pub fn matcher(&self, constraint: &Constraint) -> Result<Matcher, CoreError> {
        let refuse = |why: &str| CoreError::GrammarRejected(why.to_owned());
        let budget = match constraint {
            Constraint::JsonObject => Ok(()),
            Constraint::JsonSchema(schema) => self.limits.check_schema(schema),
            Constraint::Regex(text) | Constraint::Lark(text) => self.limits.check_text(text),
        };
        budget.map_err(|why| refuse(&why))?;
        let grammar = match constraint {
            Constraint::JsonObject => {
                TopLevelGrammar::from_json_schema(compact(serde_json::json!({"type": "object"})))
            }
            Constraint::JsonSchema(schema) => {
                TopLevelGrammar::from_json_schema(compact(schema.clone()))
            }
            Constraint::Regex(rx) => TopLevelGrammar::from_regex(rx),
            Constraint::Lark(lark) => TopLevelGrammar::from_lark(lark.clone()),
        };
        // Off the caller's stack (in a plugin call, a 2 MiB wasmtime fiber): compilation
        // recurses on the grammar's shape.
        let compiled = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("grammar".into())
                .stack_size(COMPILE_STACK)
                .spawn_scoped(scope, || {
                    let mut matcher = Matcher::new(self.factory.create_parser(grammar));
                    if let Some(e) = matcher.get_error() {
                        return Err(refuse(first_line(&e)));
                    }
                    match matcher.compute_mask() {
                        Err(e) => {
                            tracing::debug!(error = %e, "grammar fails at its first token");
                            Err(refuse(
                                "it cannot produce any output (a cycle with no terminal, or an unsatisfiable schema)",
                            ))
                        }
                        Ok(mask) if mask.is_zero() => Err(refuse("it allows no output at all")),
                        Ok(_) => Ok(matcher),
                    }
                })
                .map(|t| t.join())
        });
        match compiled {
            Ok(Ok(done)) => done,
            Ok(Err(_)) => Err(refuse("compiling it failed")),
            Err(e) => Err(CoreError::Backend(format!("grammar thread: {e}"))),
        }
    }
}

/// JSON with no free whitespace: llguidance's default lets a model pad JSON with spaces and
/// newlines until `max_tokens` cuts it, which a small model does. Separators are `,` and `:`,
/// as `json.dumps(separators=(",", ":"))` writes them. This replaces any `x-guidance` a
/// client sent.
fn compact(mut schema: serde_json::Value) -> serde_json::Value {
    if let Some(map) = schema.as_object_mut() {
        map.insert(
            "x-guidance".into(),
            serde_json::json!({"whitespace_flexible": false, "item_separator": ",", "key_separator": ":"}),
        );
    }
    schema
}

/// The first line of an llguidance error, without the parser state it may append.
fn first_line(e: &str) -> &str {
    e.lines().next().unwrap_or(e).trim()
}

/// A model's grammars, built on first use.
#[derive(Default)]
pub struct LazyGrammars {
    built: OnceLock<Result<Grammars, String>>,
    limits: GrammarLimits,
}

impl LazyGrammars {
    /// Grammars that will be built under `limits`.
    pub fn new(limits: GrammarLimits) -> Self {
        LazyGrammars {
            built: OnceLock::new(),
            limits,
        }
    }

    pub fn get(&self, tokenizer: &Tokenizer) -> Result<&Grammars, CoreError> {
        self.built
            .get_or_init(|| {
                Grammars::with_limits(tokenizer, self.limits).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| CoreError::Backend(e.clone()))
    }
}

/// Sets the logits of tokens `matcher` does not allow next to −∞; after the grammar is
/// complete only end-of-generation remains. A matcher in an error state allows nothing new:
/// it ends the sequence.
pub fn mask(matcher: &mut Matcher, logits: &mut [f32]) -> Result<(), CoreError> {
    let allowed = matcher.compute_mask_or_eos().map_err(|e| {
        // The parser's state is for the log; the client hears what happened.
        tracing::warn!(error = %e, "grammar mask failed");
        CoreError::Backend("the output grammar could not continue".into())
    })?;
    for (id, l) in logits.iter_mut().enumerate() {
        if !allowed.is_allowed(id as u32) {
            *l = f32::NEG_INFINITY;
        }
    }
    Ok(())
}
