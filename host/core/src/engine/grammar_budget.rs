//! Bounds on a grammar before llguidance sees it.
//!
//! llguidance 1.9.1 compiles `$ref` chains and object properties by recursion with no depth
//! guard: a chain of ~1000 `$ref` hops (a 34 KB body) or an object with ~8000 required
//! properties overflows a 2 MiB stack and aborts the process (a stack overflow is not a panic
//! that can be caught). This is a missing recursion guard in llguidance's JSON schema
//! compiler (`src/json/compiler.rs` of github.com/guidance-ai/llguidance). The report, with a
//! reproduction and measurements, is `docs/upstream/llguidance-recursion.md`, ready to file at
//! https://github.com/guidance-ai/llguidance/issues (these machines cannot reach it; put the
//! issue's address here once filed). So every schema is
//! walked here first, iteratively, against a node budget, and compilation itself runs on a thread
//! with a large stack (see `constraint.rs`) as a second line.

use serde_json::Value;

/// What one grammar may contain. The defaults admit every schema OpenAI's structured
/// outputs accept (5000 properties in all, 10 levels of nesting) with room to spare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrammarLimits {
    /// JSON values in the whole schema.
    pub max_nodes: usize,
    /// Nesting of JSON values.
    pub max_depth: usize,
    /// `$ref` keywords in the schema.
    pub max_refs: usize,
    /// Entries of `$defs` and `definitions` together.
    pub max_definitions: usize,
    /// Properties (and `required` names) of one object schema.
    pub max_properties: usize,
    /// Bytes of a regex or Lark grammar's text.
    pub max_text_bytes: usize,
}

impl Default for GrammarLimits {
    fn default() -> Self {
        GrammarLimits {
            max_nodes: 50_000,
            max_depth: 64,
            max_refs: 1_000,
            max_definitions: 1_000,
            max_properties: 2_000,
            max_text_bytes: 256 << 10,
        }
    }
}

impl GrammarLimits {
    /// Why `schema` is over budget, if it is.
    pub fn check_schema(&self, schema: &Value) -> Result<(), String> {
        let (mut nodes, mut refs, mut definitions) = (0usize, 0usize, 0usize);
        let mut ref_nodes: Vec<&serde_json::Map<String, Value>> = Vec::new();
        // Iterative: the point is to never recurse on client input.
        let mut stack: Vec<(&Value, usize)> = vec![(schema, 1)];
        while let Some((v, depth)) = stack.pop() {
            nodes += 1;
            if nodes > self.max_nodes {
                return Err(format!("it has more than {} JSON values", self.max_nodes));
            }
            if depth > self.max_depth {
                return Err(format!("it nests deeper than {} levels", self.max_depth));
            }
            match v {
                Value::Object(map) => {
                    if map.contains_key("$ref") {
                        ref_nodes.push(map);
                        refs += 1;
                        if refs > self.max_refs {
                            return Err(format!("it has more than {} `$ref`s", self.max_refs));
                        }
                    }
                    for key in ["$defs", "definitions"] {
                        if let Some(Value::Object(defs)) = map.get(key) {
                            definitions += defs.len();
                        }
                    }
                    if definitions > self.max_definitions {
                        return Err(format!(
                            "it has more than {} definitions",
                            self.max_definitions
                        ));
                    }
                    let properties = match map.get("properties") {
                        Some(Value::Object(p)) => p.len(),
                        _ => 0,
                    };
                    let required = match map.get("required") {
                        Some(Value::Array(r)) => r.len(),
                        _ => 0,
                    };
                    if properties.max(required) > self.max_properties {
                        return Err(format!(
                            "an object has more than {} properties",
                            self.max_properties
                        ));
                    }
                    if let Some(key) = NUMERIC_BOUNDS.iter().find(|k| {
                        map.get(**k)
                            .and_then(Value::as_f64)
                            .is_some_and(|b| b < LOWEST_BOUND)
                    }) {
                        return Err(format!(
                            "`{key}` is below -9.2e18; bounds that low are not supported"
                        ));
                    }
                    stack.extend(map.values().map(|c| (c, depth + 1)));
                }
                Value::Array(items) => stack.extend(items.iter().map(|c| (c, depth + 1))),
                _ => {}
            }
        }
        for start in ref_nodes {
            if ref_cycle(schema, start, self.max_refs) {
                return Err(
                    "it has a `$ref` cycle with no terminal (each schema in it is only a `$ref` to the next)"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// Why a regex or Lark grammar's text is over budget, if it is.
    pub fn check_text(&self, text: &str) -> Result<(), String> {
        if text.len() > self.max_text_bytes {
            return Err(format!("it is longer than {} bytes", self.max_text_bytes));
        }
        Ok(())
    }
}

/// Numeric bounds of a schema.
const NUMERIC_BOUNDS: [&str; 4] = ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"];

/// llguidance 1.9.1 saturates integer bounds to i64 and recurses without end (a stack
/// overflow, whatever the stack) on a range whose ends are both `i64::MIN`, e.g.
/// `{"type": "integer", "minimum": -1e30, "maximum": -1e30}` (found by
/// `tests/all/fuzz_schemas.rs`; see `docs/upstream/llguidance-recursion.md`). A bound that
/// low is refused whatever the type: `allOf` can pair it with `integer` elsewhere. Ranges
/// with one end there already fail to compile with an error.
const LOWEST_BOUND: f64 = -9.2e18;

/// Keywords that do not constrain a value: a schema with only these and `$ref` is the
/// schema it points at.
const ANNOTATIONS: [&str; 6] = [
    "$ref",
    "title",
    "description",
    "$comment",
    "default",
    "examples",
];

/// Whether following `$ref`s from `start`, through schemas that are nothing but a `$ref`,
/// comes back to one already seen: no value can ever match (llguidance compiles it, then
/// fails at the first token that reaches it).
fn ref_cycle(root: &Value, start: &serde_json::Map<String, Value>, max_hops: usize) -> bool {
    let mut seen: Vec<&str> = Vec::new();
    let mut node = start;
    for _ in 0..=max_hops {
        if !node.keys().all(|k| ANNOTATIONS.contains(&k.as_str())) {
            return false;
        }
        let Some(Value::String(target)) = node.get("$ref") else {
            return false;
        };
        if seen.contains(&target.as_str()) {
            return true;
        }
        seen.push(target);
        let Some(pointer) = target.strip_prefix('#') else {
            return false;
        };
        match root.pointer(pointer) {
            Some(Value::Object(next)) => node = next,
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A chain of `n` `$ref` hops ending in a string.
    #[test]
    fn integer_bounds_llguidance_cannot_compile_are_refused() {
        let l = GrammarLimits::default();
        for bad in [
            json!({"type": "integer", "minimum": -1e30, "maximum": -1e30}),
            json!({"allOf": [{"type": "integer"}, {"minimum": -9223372036854775807i64, "maximum": -9223372036854775806i64}]}),
            json!({"properties": {"a": {"exclusiveMaximum": -1e300}}}),
        ] {
            let why = l.check_schema(&bad).expect_err("refused");
            assert!(why.contains("below"), "{why}");
        }
        for ok in [
            json!({"type": "integer", "minimum": -9007199254740991i64, "maximum": 9007199254740991i64}),
            json!({"type": "number", "maximum": 1e300}),
            json!({"type": "integer", "minimum": -5, "maximum": -5}),
        ] {
            assert_eq!(l.check_schema(&ok), Ok(()), "{ok}");
        }
    }

    pub(crate) fn ref_chain(n: usize) -> Value {
        let mut defs = serde_json::Map::new();
        for i in 0..n {
            defs.insert(
                format!("d{i}"),
                json!({"$ref": format!("#/$defs/d{}", i + 1)}),
            );
        }
        defs.insert(format!("d{n}"), json!({"type": "string"}));
        json!({"$defs": defs, "$ref": "#/$defs/d0"})
    }

    fn wide(n: usize) -> Value {
        let props: serde_json::Map<String, Value> = (0..n)
            .map(|i| (format!("p{i}"), json!({"type": "integer"})))
            .collect();
        let required: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
        json!({"type": "object", "properties": props, "required": required})
    }

    #[test]
    fn killer_schemas_are_over_budget() {
        let l = GrammarLimits::default();
        assert!(l.check_schema(&ref_chain(100)).is_ok());
        assert!(l.check_schema(&ref_chain(3000)).is_err());
        assert!(l.check_schema(&wide(500)).is_ok());
        assert!(l.check_schema(&wide(8000)).is_err());
        let mut deep = json!({"type": "string"});
        for _ in 0..100 {
            deep = json!({"type": "array", "items": deep});
        }
        assert!(l.check_schema(&deep).unwrap_err().contains("nests"));
        assert!(l.check_text(&"a".repeat(300 << 10)).is_err());
    }

    #[test]
    fn ref_cycles_with_no_terminal_are_found_wherever_they_sit() {
        let l = GrammarLimits::default();
        let cycle =
            json!({"a": {"$ref": "#/$defs/b", "description": "x"}, "b": {"$ref": "#/$defs/a"}});
        let top = json!({"$defs": cycle, "$ref": "#/$defs/a"});
        assert!(l.check_schema(&top).unwrap_err().contains("cycle"));
        // Deep inside, as a tool's parameters sit inside the call envelope.
        let nested = json!({"type": "array", "items": {"type": "object",
            "properties": {"x": {"$ref": "#/$defs/fn0/$defs/a"}}},
            "$defs": {"fn0": {"$defs": {"a": {"$ref": "#/$defs/fn0/$defs/a"}}}}});
        assert!(l.check_schema(&nested).is_err());
        // Recursion through real structure is fine (a tree).
        let tree = json!({"$defs": {"node": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}}, "$ref": "#/$defs/node"});
        assert!(l.check_schema(&tree).is_ok());
        assert!(l.check_schema(&ref_chain(50)).is_ok());
    }
}
