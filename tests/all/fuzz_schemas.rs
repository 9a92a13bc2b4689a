//! The schema pre-check and the grammar compiler under fuzzing (issue 17): arbitrary
//! schema-shaped JSON (types, properties, `$ref`s into `$defs` and out of them, `anyOf`,
//! `enum`, patterns, bounds) and arbitrary regexes, compiled for the real SmolLM2 vocabulary,
//! are either accepted or refused as a 400 naming `response_format`: never a panic, never an
//! abort, never an internal error. `PROPTEST_CASES` raises the number of cases; an abort
//! cannot be shrunk, so `FUZZ_LOG=<file>` writes each case there before it runs. It found
//! the integer range llguidance recursed on for ever (`grammar_budget.rs`, `LOWEST_BOUND`).

use std::sync::OnceLock;

use cinder_core::{Constraint, CoreError, Grammars};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn grammars() -> &'static Grammars {
    static G: OnceLock<Grammars> = OnceLock::new();
    G.get_or_init(|| {
        let model = crate::load_smollm2();
        Grammars::new(&model.tokenizer).expect("token trie")
    })
}

const TYPES: &[&str] = &[
    "object", "string", "integer", "number", "boolean", "null", "array", "str", "",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-5i64..50).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop_oneof![Just(0.5), Just(-1e300), Just(1e300)].prop_map(Value::from),
        "[a-z0-9|()*+?\\[\\]{}^$.\\\\-]{0,10}".prop_map(Value::from),
    ]
}

/// A reference: into the `$defs` a schema may have, or anywhere.
fn reference() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u8..4).prop_map(|i| Value::from(format!("#/$defs/d{i}"))),
        Just(Value::from("#")),
        "[#/a-z$0-9]{0,12}".prop_map(Value::from),
    ]
}

fn schema() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        prop::sample::select(TYPES).prop_map(|t| json!({"type": t})),
        reference().prop_map(|r| json!({"$ref": r})),
        prop::collection::vec(scalar(), 0..4).prop_map(|e| json!({"enum": e})),
        scalar().prop_map(|p| json!({"type": "string", "pattern": p})),
        (scalar(), scalar())
            .prop_map(|(a, b)| json!({"type": "integer", "minimum": a, "maximum": b})),
        (scalar(), scalar())
            .prop_map(|(a, b)| json!({"type": "string", "minLength": a, "maxLength": b})),
        scalar(),
    ];
    leaf.prop_recursive(5, 64, 5, |inner| {
        prop_oneof![
            (
                prop::collection::btree_map("[a-z]{1,3}", inner.clone(), 0..5),
                prop::collection::vec("[a-z]{1,3}", 0..4),
                prop::option::of(any::<bool>()),
            )
                .prop_map(|(props, required, extra)| {
                    let mut o = json!({"type": "object", "properties": props.into_iter().collect::<Map<_, _>>(), "required": required});
                    if let Some(extra) = extra {
                        o["additionalProperties"] = Value::from(extra);
                    }
                    o
                }),
            (inner.clone(), scalar(), scalar()).prop_map(|(items, min, max)| {
                json!({"type": "array", "items": items, "minItems": min, "maxItems": max})
            }),
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| json!({"anyOf": v})),
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| json!({"allOf": v})),
            (inner.clone(), prop::collection::vec(inner, 0..4)).prop_map(|(root, defs)| {
                let defs: Map<_, _> = defs.into_iter().enumerate().map(|(i, d)| (format!("d{i}"), d)).collect();
                let mut root = root;
                if let Value::Object(o) = &mut root {
                    o.insert("$defs".into(), Value::Object(defs));
                }
                root
            }),
        ]
    })
}

fn accepted_or_a_400(what: &str, r: Result<impl Sized, CoreError>) -> Result<(), TestCaseError> {
    match r {
        Ok(_) => Ok(()),
        Err(CoreError::GrammarRejected(_)) => Ok(()),
        Err(other) => Err(TestCaseError::fail(format!("{what}: {other:?}"))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(96)
    ))]

    #[test]
    fn any_schema_is_compiled_or_refused_by_name(s in schema()) {
        // An abort cannot be shrunk or reported: FUZZ_LOG keeps the case that caused it.
        if let Ok(path) = std::env::var("FUZZ_LOG") {
            std::fs::write(path, s.to_string()).expect("fuzz log");
        }
        let r = grammars().matcher(&Constraint::JsonSchema(s.clone()));
        accepted_or_a_400(&s.to_string(), r)?;
    }

    #[test]
    fn any_regex_is_compiled_or_refused_by_name(re in "[a-z0-9|()*+?\\[\\]{}^$.\\\\-]{0,40}") {
        if let Ok(path) = std::env::var("FUZZ_LOG") {
            std::fs::write(format!("{path}.re"), &re).expect("fuzz log");
        }
        let r = grammars().matcher(&Constraint::Regex(re.clone()));
        accepted_or_a_400(&re, r)?;
    }
}
