//! The paging parameters every OpenAI list endpoint shares (`limit`, `order`, `after`) and
//! the list object it answers with.

use serde_json::{Value, json};

use super::{Checked, Invalid};

/// A list request's paging, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListParams {
    /// 1 to the endpoint's maximum.
    pub limit: u32,
    /// `order=desc`.
    pub newest_first: bool,
    /// The id to list after (a cursor).
    pub after: Option<String>,
}

impl ListParams {
    /// Reads `limit` (1..=`max_limit`, `default_limit` when absent), `order` (`asc` or
    /// `desc`, newest first when absent if `newest_first_by_default`) and `after` from a
    /// query string's decoded pairs.
    pub fn parse(
        pairs: &[(String, String)],
        default_limit: u32,
        max_limit: u32,
        newest_first_by_default: bool,
    ) -> Checked<ListParams> {
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let limit = match get("limit") {
            None => default_limit,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=max_limit).contains(l))
                .ok_or_else(|| {
                    Invalid::new(format!("limit must be between 1 and {max_limit}"), "limit")
                })?,
        };
        let newest_first = match get("order") {
            None => newest_first_by_default,
            Some("asc") => false,
            Some("desc") => true,
            Some(_) => return Err(Invalid::new("order is `asc` or `desc`", "order")),
        };
        Ok(ListParams {
            limit,
            newest_first,
            after: get("after").filter(|a| !a.is_empty()).map(str::to_owned),
        })
    }
}

/// OpenAI's list object: `data` with the first and last ids and whether more follow.
pub fn list_body(data: Vec<Value>, has_more: bool) -> Value {
    let id = |v: Option<&Value>| v.and_then(|v| v["id"].as_str()).map(str::to_owned);
    json!({
        "object": "list",
        "first_id": id(data.first()),
        "last_id": id(data.last()),
        "has_more": has_more,
        "data": data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn paging_is_checked_by_name() {
        let p = ListParams::parse(&pairs(&[]), 20, 100, true).unwrap();
        assert_eq!((p.limit, p.newest_first, p.after), (20, true, None));
        let p = ListParams::parse(
            &pairs(&[("limit", "5"), ("order", "asc"), ("after", "x")]),
            20,
            100,
            true,
        )
        .unwrap();
        assert_eq!(
            (p.limit, p.newest_first, p.after.as_deref()),
            (5, false, Some("x"))
        );
        for (k, v) in [
            ("limit", "0"),
            ("limit", "101"),
            ("limit", "-1"),
            ("limit", "x"),
            ("order", "up"),
        ] {
            let e = ListParams::parse(&pairs(&[(k, v)]), 20, 100, false).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(k));
        }
        let body = list_body(vec![json!({"id": "a"}), json!({"id": "b"})], true);
        assert_eq!(
            (body["first_id"].as_str(), body["last_id"].as_str()),
            (Some("a"), Some("b"))
        );
        assert_eq!(list_body(Vec::new(), false)["first_id"], Value::Null);
    }
}
