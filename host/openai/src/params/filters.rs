//! OpenAI's attribute filters (`filters` of a search, and of file_search): comparisons
//! (`eq`, `ne`, `gt`, `gte`, `lt`, `lte`, `in`, `nin`) on one attribute, joined by `and` /
//! `or`, checked once and then matched against each file's `attributes`.

use serde_json::{Map, Value};

/// How deep compound filters nest at most.
const MAX_DEPTH: usize = 8;
/// Comparisons one filter holds at most.
const MAX_COMPARISONS: usize = 64;

/// A checked filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare { op: Op, key: String, value: Value },
    All(Vec<Filter>),
    Any(Vec<Filter>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    Nin,
}

/// Why a filter was refused (a message for the 400 naming `filters`).
pub type Refusal = String;

/// Reads `v` as a filter.
pub fn parse(v: &Value) -> Result<Filter, Refusal> {
    let mut comparisons = 0;
    parse_at(v, 0, &mut comparisons)
}

fn parse_at(v: &Value, depth: usize, comparisons: &mut usize) -> Result<Filter, Refusal> {
    if depth > MAX_DEPTH {
        return Err(format!("filters nest at most {MAX_DEPTH} deep"));
    }
    let ty = v["type"].as_str().unwrap_or_default();
    if ty == "and" || ty == "or" {
        let parts = v["filters"]
            .as_array()
            .ok_or("a compound filter has `filters`, an array")?
            .iter()
            .map(|f| parse_at(f, depth + 1, comparisons))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(if ty == "and" {
            Filter::All(parts)
        } else {
            Filter::Any(parts)
        });
    }
    let op = match ty {
        "eq" => Op::Eq,
        "ne" => Op::Ne,
        "gt" => Op::Gt,
        "gte" => Op::Gte,
        "lt" => Op::Lt,
        "lte" => Op::Lte,
        "in" => Op::In,
        "nin" => Op::Nin,
        other => {
            return Err(format!(
                "`{other}` is no filter type (eq, ne, gt, gte, lt, lte, in, nin, and, or)"
            ));
        }
    };
    *comparisons += 1;
    if *comparisons > MAX_COMPARISONS {
        return Err(format!(
            "a filter holds at most {MAX_COMPARISONS} comparisons"
        ));
    }
    let key = v["key"]
        .as_str()
        .ok_or("a comparison filter has a string `key`")?;
    let value = v["value"].clone();
    let scalar = |x: &Value| x.is_string() || x.is_number() || x.is_boolean();
    let ok = match op {
        Op::In | Op::Nin => value.as_array().is_some_and(|a| a.iter().all(scalar)),
        _ => scalar(&value),
    };
    if !ok {
        return Err(format!(
            "the `value` of a `{ty}` filter is {}",
            if matches!(op, Op::In | Op::Nin) {
                "an array of strings, numbers or booleans"
            } else {
                "a string, number or boolean"
            }
        ));
    }
    Ok(Filter::Compare {
        op,
        key: key.to_owned(),
        value,
    })
}

fn equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn order(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

impl Filter {
    /// Whether a file with `attributes` passes. A missing attribute matches only `ne` and
    /// `nin`.
    pub fn matches(&self, attributes: &Map<String, Value>) -> bool {
        match self {
            Filter::All(fs) => fs.iter().all(|f| f.matches(attributes)),
            Filter::Any(fs) => fs.iter().any(|f| f.matches(attributes)),
            Filter::Compare { op, key, value } => {
                let Some(have) = attributes.get(key) else {
                    return matches!(op, Op::Ne | Op::Nin);
                };
                let listed = || {
                    value
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| equal(have, x)))
                };
                use std::cmp::Ordering::*;
                match op {
                    Op::Eq => equal(have, value),
                    Op::Ne => !equal(have, value),
                    Op::Gt => order(have, value) == Some(Greater),
                    Op::Gte => matches!(order(have, value), Some(Greater | Equal)),
                    Op::Lt => order(have, value) == Some(Less),
                    Op::Lte => matches!(order(have, value), Some(Less | Equal)),
                    Op::In => listed(),
                    Op::Nin => !listed(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn comparisons_and_compounds_match_as_openai_describes() {
        let a = attrs(json!({"author": "ada", "year": 2021, "draft": false}));
        let yes = [
            json!({"type": "eq", "key": "author", "value": "ada"}),
            json!({"type": "gte", "key": "year", "value": 2021.0}),
            json!({"type": "lt", "key": "year", "value": 2022}),
            json!({"type": "in", "key": "author", "value": ["bob", "ada"]}),
            json!({"type": "ne", "key": "missing", "value": 1}),
            json!({"type": "and", "filters": [{"type": "eq", "key": "draft", "value": false},
                                              {"type": "or", "filters": [{"type": "eq", "key": "year", "value": 1999},
                                                                         {"type": "gt", "key": "year", "value": 2000}]}]}),
        ];
        for f in yes {
            assert!(parse(&f).unwrap().matches(&a), "{f}");
        }
        let no = [
            json!({"type": "eq", "key": "missing", "value": 1}),
            json!({"type": "gt", "key": "author", "value": 3}),
            json!({"type": "nin", "key": "author", "value": ["ada"]}),
        ];
        for f in no {
            assert!(!parse(&f).unwrap().matches(&a), "{f}");
        }
    }

    #[test]
    fn malformed_or_huge_filters_are_refused() {
        for f in [
            json!({"type": "like", "key": "a", "value": 1}),
            json!({"type": "eq", "value": 1}),
            json!({"type": "in", "key": "a", "value": 1}),
            json!({"type": "eq", "key": "a", "value": {"x": 1}}),
            json!({"type": "and"}),
        ] {
            assert!(parse(&f).is_err(), "{f}");
        }
        let mut deep = json!({"type": "eq", "key": "a", "value": 1});
        for _ in 0..10 {
            deep = json!({"type": "and", "filters": [deep]});
        }
        assert!(parse(&deep).unwrap_err().contains("nest"));
        let many: Vec<Value> = (0..65)
            .map(|i| json!({"type": "eq", "key": "a", "value": i}))
            .collect();
        assert!(parse(&json!({"type": "or", "filters": many})).is_err());
    }
}
