//! The Conversations API (`/v1/conversations`): a conversation is an object in
//! `conversations`, each of its items an object in `conversation_items` (its id the item's, its
//! conversation in the store's metadata, so listing is a filtered, cursor-paged store query). A
//! response created with `conversation` reads the items as its context and appends its input
//! and output items.

use serde_json::{Value, json};

use cinder_sdk::host::Host;
use cinder_sdk::openai::params::list::ListParams;
use cinder_sdk::openai::params::metadata;
use cinder_sdk::openai::params::responses::{MAX_NEW_CONVERSATION_ITEMS, items};
use cinder_sdk::openai::responses::{Conversation, Deleted, ItemList, OutputItem};
use cinder_sdk::store::{Change, NewObject, Object, Order, Query};
use cinder_sdk::{Error, ErrorDetail, Request, Route};

use crate::items::stored_input;

pub const CONVERSATIONS: &str = "conversations";
pub const ITEMS: &str = "conversation_items";

/// Items a response reads from its conversation at most: past this, a 400 asks the client to
/// start a new conversation (or continue by `previous_response_id`).
pub const MAX_CONTEXT_ITEMS: usize = 10_000;

/// Items read from the store per query while gathering a context or deleting.
const PAGE: u32 = 100;

fn not_found(id: &str) -> Error {
    Error::NotFound(ErrorDetail {
        message: format!("Conversation with id '{id}' not found."),
        param: None,
        code: None,
    })
}

fn item_not_found(id: &str) -> Error {
    Error::NotFound(ErrorDetail {
        message: format!("Item with id '{id}' not found."),
        param: None,
        code: None,
    })
}

fn shown(o: &Object) -> Conversation {
    Conversation {
        id: o.id.clone(),
        object: "conversation".into(),
        created_at: u64::try_from(o.created_at).unwrap_or(0),
        metadata: serde_json::from_str(&o.body).unwrap_or_else(|_| json!({})),
    }
}

/// The conversation `id`, if the caller has one.
pub fn find(host: &dyn Host, id: &str) -> Result<Option<Object>, Error> {
    if !crate::stored::is_id(id) {
        return Ok(None);
    }
    host.get_object(CONVERSATIONS, id)
}

/// Appends `items` to the conversation `id`.
pub fn append(host: &dyn Host, id: &str, items: &[OutputItem]) -> Result<(), Error> {
    for item in items {
        let new = NewObject {
            id_prefix: "item_".into(),
            status: None,
            metadata: vec![("conversation".into(), id.to_owned())],
            body: serde_json::to_string(item)
                .map_err(|e| Error::Internal(format!("serializing an item: {e}")))?,
        };
        host.put_object(ITEMS, item.id(), &new)?;
    }
    Ok(())
}

fn query(id: &str, limit: u32, order: Order, after: Option<String>) -> Query {
    Query {
        limit,
        order,
        after,
        before: None,
        status: None,
        metadata: vec![("conversation".into(), id.to_owned())],
    }
}

fn item_of(o: &Object) -> Result<OutputItem, Error> {
    serde_json::from_str(&o.body)
        .map_err(|e| Error::Internal(format!("the stored item {} is unreadable: {e}", o.id)))
}

/// Every item of the conversation `id`, oldest first: a response's context.
pub fn context(host: &dyn Host, id: &str) -> Result<Vec<OutputItem>, Error> {
    if find(host, id)?.is_none() {
        return Err(Error::NotFound(ErrorDetail {
            message: format!("Conversation with id '{id}' not found."),
            param: Some("conversation".into()),
            code: None,
        }));
    }
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = host.list_objects(ITEMS, &query(id, PAGE, Order::Asc, after.take()))?;
        for o in &page.objects {
            out.push(item_of(o)?);
        }
        if out.len() > MAX_CONTEXT_ITEMS {
            return Err(cinder_sdk::invalid_request(
                &format!(
                    "the conversation has more than {MAX_CONTEXT_ITEMS} items; start a new one"
                ),
                Some("conversation"),
            ));
        }
        match (page.has_more, page.objects.last()) {
            (true, Some(last)) => after = Some(last.id.clone()),
            _ => return Ok(out),
        }
    }
}

/// Serves the `conversations.*` routes.
pub fn serve(route: &Route, request: Request, host: &dyn Host) -> Result<(), Error> {
    let id = route.param("id").unwrap_or_default();
    match route.id.as_str() {
        "conversations.create" => create(request, host),
        "conversations.retrieve" => {
            let o = find(host, id)?.ok_or_else(|| not_found(id))?;
            host.respond_json(200, &shown(&o))
        }
        "conversations.update" => update(id, request, host),
        "conversations.delete" => delete(id, host),
        "conversations.items.create" => add_items(id, request, host),
        "conversations.items.list" => list_items(id, request, host),
        "conversations.items.retrieve" | "conversations.items.delete" => {
            let item_id = route.param("item_id").unwrap_or_default();
            let conversation = find(host, id)?.ok_or_else(|| not_found(id))?;
            let object = host
                .get_object(ITEMS, item_id)?
                .filter(|o| {
                    o.metadata
                        .iter()
                        .any(|(k, v)| k == "conversation" && v == id)
                })
                .ok_or_else(|| item_not_found(item_id))?;
            if route.id == "conversations.items.retrieve" {
                return host.respond_json(200, &item_of(&object)?);
            }
            host.delete_object(ITEMS, item_id)?;
            host.respond_json(200, &shown(&conversation))
        }
        other => Err(Error::NotFound(ErrorDetail {
            message: format!("the responses plugin serves no route `{other}`"),
            param: None,
            code: Some("unknown_url".into()),
        })),
    }
}

fn create(request: Request, host: &dyn Host) -> Result<(), Error> {
    // `safety_identifier` identifies the end user to OpenAI's abuse checks; there are none here.
    let map = cinder_sdk::object_body(&request.body, &["items", "metadata", "safety_identifier"])?;
    let meta = metadata(map.get("metadata").cloned())?.unwrap_or_else(|| json!({}));
    let new_items = match map.get("items") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => items("items", list, MAX_NEW_CONVERSATION_ITEMS)?,
        Some(_) => {
            return Err(cinder_sdk::invalid_request(
                "`items` must be an array",
                Some("items"),
            ));
        }
    };
    // Items checked (their files found) before anything is kept: a refused request leaves no
    // conversation behind.
    let new_items = stored_input(&request.request_id, "items", new_items, host)?;
    let object = host.create_object(
        CONVERSATIONS,
        &NewObject {
            id_prefix: "conv_".into(),
            status: None,
            metadata: Vec::new(),
            body: meta.to_string(),
        },
    )?;
    append(host, &object.id, &new_items)?;
    host.respond_json(200, &shown(&object))
}

fn update(id: &str, request: Request, host: &dyn Host) -> Result<(), Error> {
    let map = cinder_sdk::object_body(&request.body, &["metadata"])?;
    let meta = metadata(map.get("metadata").cloned())?.ok_or_else(|| {
        cinder_sdk::invalid_request("Missing required parameter: 'metadata'.", Some("metadata"))
    })?;
    if !crate::stored::is_id(id) {
        return Err(not_found(id));
    }
    let change = Change {
        status: None,
        metadata: Vec::new(),
        body: meta.to_string(),
        expect_version: None,
    };
    match host.update_object(CONVERSATIONS, id, &change)? {
        cinder_sdk::store::Updated::Done(o) => host.respond_json(200, &shown(&o)),
        _ => Err(not_found(id)),
    }
}

fn delete(id: &str, host: &dyn Host) -> Result<(), Error> {
    find(host, id)?.ok_or_else(|| not_found(id))?;
    // Items first: a crash in between leaves a conversation that can be deleted again.
    loop {
        let page = host.list_objects(ITEMS, &query(id, PAGE, Order::Asc, None))?;
        for o in &page.objects {
            host.delete_object(ITEMS, &o.id)?;
        }
        if !page.has_more {
            break;
        }
    }
    host.delete_object(CONVERSATIONS, id)?;
    host.respond_json(
        200,
        &Deleted {
            id: id.to_owned(),
            object: "conversation.deleted".into(),
            deleted: true,
        },
    )
}

fn add_items(id: &str, request: Request, host: &dyn Host) -> Result<(), Error> {
    let map = cinder_sdk::object_body(&request.body, &["items"])?;
    find(host, id)?.ok_or_else(|| not_found(id))?;
    let list = match map.get("items") {
        Some(Value::Array(list)) => items("items", list, MAX_NEW_CONVERSATION_ITEMS)?,
        _ => {
            return Err(cinder_sdk::invalid_request(
                "Missing required parameter: 'items'.",
                Some("items"),
            ));
        }
    };
    let added = stored_input(&request.request_id, "items", list, host)?;
    append(host, id, &added)?;
    host.respond_json(200, &item_list(added, false))
}

fn item_list(data: Vec<OutputItem>, has_more: bool) -> ItemList {
    ItemList {
        object: "list".into(),
        first_id: data.first().map(|i| i.id().to_owned()),
        last_id: data.last().map(|i| i.id().to_owned()),
        has_more,
        data,
    }
}

fn list_items(id: &str, request: Request, host: &dyn Host) -> Result<(), Error> {
    let pairs: Vec<(String, String)> = request
        .query()
        .into_iter()
        .filter(|(k, _)| k != "include" && k != "include[]")
        .collect();
    if let Some((k, _)) = pairs
        .iter()
        .find(|(k, _)| !["limit", "order", "after"].contains(&k.as_str()))
    {
        return Err(cinder_sdk::invalid_request(
            &format!("Unknown parameter: '{k}'."),
            Some(k),
        ));
    }
    let p = ListParams::parse(&pairs, 20, 100, true)?;
    find(host, id)?.ok_or_else(|| not_found(id))?;
    let order = if p.newest_first {
        Order::Desc
    } else {
        Order::Asc
    };
    let page = host.list_objects(ITEMS, &query(id, p.limit, order, p.after))?;
    let data = page
        .objects
        .iter()
        .map(item_of)
        .collect::<Result<Vec<_>, _>>()?;
    host.respond_json(200, &item_list(data, page.has_more))
}
