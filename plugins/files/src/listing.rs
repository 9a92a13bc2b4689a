//! A list request's paging (OpenAI's rules, from the SDK) as a store query.

use cinder_sdk::Error;
use cinder_sdk::openai::params::list::ListParams;
use cinder_sdk::store::{Order, Query};

pub(crate) use cinder_sdk::openai::params::list::list_body as body;

/// `limit` (1..=`max`, default `default`), `order` (default `desc`) and `after` as a query.
pub(crate) fn query(pairs: &[(String, String)], default: u32, max: u32) -> Result<Query, Error> {
    let p = ListParams::parse(pairs, default, max, true)?;
    Ok(Query {
        limit: p.limit,
        order: if p.newest_first {
            Order::Desc
        } else {
            Order::Asc
        },
        after: p.after,
        before: None,
        status: None,
        metadata: Vec::new(),
    })
}
