//! A list request's paging (OpenAI's rules, from the SDK) as a store query.

use cinder_sdk::Error;
use cinder_sdk::openai::params::list::ListParams;
use cinder_sdk::store::Query;

pub(crate) use cinder_sdk::openai::params::list::list_body as body;

/// `limit` (1..=`max`, default `default`), `order` (default `desc`) and `after` as a query.
pub(crate) fn query(pairs: &[(String, String)], default: u32, max: u32) -> Result<Query, Error> {
    Ok(ListParams::parse(pairs, default, max, true)?.into())
}
