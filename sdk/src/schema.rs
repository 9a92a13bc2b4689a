//! JSON Schemas as OpenAI clients mean them, before they become grammars.
//!
//! Clients (LangChain's `bind_tools`, instructor, most hand-written tools) send object schemas
//! without `additionalProperties`, and every one of them assumes the answer has only the
//! declared properties: OpenAI's strict mode requires `"additionalProperties": false`, and its
//! models never invent keys. JSON Schema's own default (`true`) would let a grammar accept any
//! extra key, and a small model then writes keys until it runs out of tokens. So the grammar
//! of a `response_format` schema or of a tool's parameters closes every object schema that
//! declares `properties` and says nothing of `additionalProperties`. An explicit `true` or a
//! schema keeps its meaning, and so does an object with no `properties` (a free-form object).

use serde_json::Value;

/// Deeper schemas are left as they are below this depth (serde_json refuses JSON nested
/// more than 128 levels, so this is only a guard for callers that build `Value`s by hand).
const MAX_DEPTH: usize = 256;

/// Keywords whose value is a map of names to subschemas.
const SCHEMA_MAPS: [&str; 5] = [
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];
/// Keywords whose value is a list of subschemas (`allOf` is handled apart).
const SCHEMA_LISTS: [&str; 3] = ["anyOf", "oneOf", "prefixItems"];
/// Keywords whose value is one subschema.
const SCHEMA_ONE: [&str; 9] = [
    "items",
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedItems",
];

/// Returns `schema` with every object schema that declares `properties` and not
/// `additionalProperties` closed (`"additionalProperties": false`).
pub fn close_objects(mut schema: Value) -> Value {
    close(&mut schema, 0, true);
    schema
}

/// `closable` is false for the branches of a multi-branch `allOf`: closing each would make
/// their intersection refuse the properties the other branches declare.
fn close(schema: &mut Value, depth: usize, closable: bool) {
    if depth > MAX_DEPTH {
        return;
    }
    let Value::Object(map) = schema else {
        return;
    };
    if closable
        && map.get("properties").is_some_and(Value::is_object)
        && !map.contains_key("additionalProperties")
        && !map.contains_key("unevaluatedProperties")
    {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    for key in SCHEMA_MAPS {
        if let Some(Value::Object(subs)) = map.get_mut(key) {
            for sub in subs.values_mut() {
                close(sub, depth + 1, true);
            }
        }
    }
    for key in SCHEMA_LISTS {
        if let Some(Value::Array(subs)) = map.get_mut(key) {
            for sub in subs {
                close(sub, depth + 1, true);
            }
        }
    }
    if let Some(Value::Array(subs)) = map.get_mut("allOf") {
        let alone = subs.len() == 1;
        for sub in subs {
            close(sub, depth + 1, alone);
        }
    }
    for key in SCHEMA_ONE {
        match map.get_mut(key) {
            Some(sub @ Value::Object(_)) => close(sub, depth + 1, true),
            // Draft 4's tuple form of `items`.
            Some(Value::Array(subs)) if key == "items" => {
                for sub in subs {
                    close(sub, depth + 1, true);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_with_properties_are_closed_everywhere() {
        let s = close_objects(json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "home": {"type": "object", "properties": {"city": {"type": "string"}}},
                "tags": {"type": "array", "items": {"properties": {"t": {}}}},
                "either": {"anyOf": [{"properties": {"a": {}}}, {"type": "null"}]}
            },
            "$defs": {"Pet": {"type": "object", "properties": {"kind": {}}}}
        }));
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["properties"]["home"]["additionalProperties"], false);
        assert_eq!(
            s["properties"]["tags"]["items"]["additionalProperties"],
            false
        );
        assert_eq!(
            s["properties"]["either"]["anyOf"][0]["additionalProperties"],
            false
        );
        assert_eq!(s["$defs"]["Pet"]["additionalProperties"], false);
        assert!(
            s["properties"]["either"]["anyOf"][1]
                .get("additionalProperties")
                .is_none()
        );
        // Order is kept: the grammar writes properties in the schema's order.
        let keys: Vec<&String> = s["properties"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["name", "home", "tags", "either"]);
    }

    #[test]
    fn explicit_choices_and_free_form_objects_keep_their_meaning() {
        let s = close_objects(json!({
            "type": "object",
            "properties": {
                "open": {"type": "object", "properties": {"a": {}}, "additionalProperties": true},
                "typed": {"type": "object", "properties": {}, "additionalProperties": {"type": "integer", "properties": {"x": {}}}},
                "free": {"type": "object"}
            }
        }));
        assert_eq!(s["properties"]["open"]["additionalProperties"], true);
        assert_eq!(
            s["properties"]["typed"]["additionalProperties"]["additionalProperties"],
            false
        );
        assert!(
            s["properties"]["free"]
                .get("additionalProperties")
                .is_none()
        );
    }

    #[test]
    fn all_of_branches_are_not_closed_apart() {
        let s = close_objects(json!({
            "allOf": [{"properties": {"a": {}}}, {"properties": {"b": {"properties": {"c": {}}}}}]
        }));
        assert!(s["allOf"][0].get("additionalProperties").is_none());
        assert_eq!(
            s["allOf"][1]["properties"]["b"]["additionalProperties"],
            false
        );
        let one = close_objects(json!({"allOf": [{"properties": {"a": {}}}]}));
        assert_eq!(one["allOf"][0]["additionalProperties"], false);
    }

    #[test]
    fn deep_schemas_do_not_overflow() {
        let mut s = json!({"type": "string"});
        for _ in 0..600 {
            s = json!({"type": "object", "properties": {"x": s}});
        }
        let s = close_objects(s);
        assert_eq!(s["additionalProperties"], false);
    }
}
