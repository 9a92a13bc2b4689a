//! The `file_search` tool: before the model answers, the text of the input's last user
//! message is searched in the tool's vector stores (`cinder_file_search`, in this request:
//! a live request may not dispatch to the vector stores plugin's route). The search is the
//! response's first output item (`file_search_call`, its results when `include` asks for
//! them), the best excerpts go to the model after the instructions, and the answer's text
//! cites the files they came from (`file_citation` annotations).

use cinder_file_search::{Ask, Excerpts, Found};
use cinder_sdk::Error;
use cinder_sdk::host::Host;
use cinder_sdk::openai::responses::OutputItem;
use cinder_sdk::tools::Message;

use crate::run::Plan;

/// Results a search keeps when the tool says nothing (few: a small model's context is short).
const DEFAULT_RESULTS: u32 = 5;
/// Files an answer cites at most.
const MAX_CITED: usize = 3;
/// The embedding model of a store that names none (made before stores kept theirs): the
/// vector stores plugin's default.
const DEFAULT_MODEL: &str = "text-embedding-3-small";

/// What a search found, for the response and for the prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Searched {
    /// The completed `file_search_call` item.
    pub item: OutputItem,
    /// (file id, file name) the answer cites.
    pub cited: Vec<(String, String)>,
    /// The excerpts lead the prompt (a system message a truncation keeps).
    pub in_prompt: bool,
}

/// The vector stores the tool names exist and are the caller's (a background response says
/// so before it is queued).
pub fn check_stores(plan: &Plan, host: &dyn Host) -> Result<(), Error> {
    if let Some(tool) = &plan.params.file_search {
        for id in &tool.vector_store_ids {
            cinder_file_search::find_store(host, id)?;
        }
    }
    Ok(())
}

/// Searches when the request's file_search tool lets it, and gives the model the excerpts.
pub fn search(plan: &mut Plan, host: &dyn Host) -> Result<(), Error> {
    let Some(tool) = &plan.params.file_search else {
        return Ok(());
    };
    let Some(query) = plan
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content.trim().to_owned())
        .filter(|q| !q.is_empty())
    else {
        return Ok(());
    };
    let ask = Ask {
        query: &query,
        k: tool.max_num_results.unwrap_or(DEFAULT_RESULTS),
        filter: tool.filter.as_ref(),
        threshold: tool.score_threshold.unwrap_or(f32::NEG_INFINITY),
    };
    let found = cinder_file_search::search_stores(
        host,
        &tool.vector_store_ids,
        "tools",
        DEFAULT_MODEL,
        ask,
    )?;
    // The excerpts get what the prompt leaves of the context after the answer's room, at
    // two characters a token (few tokens are shorter; code and other scripts come close).
    let context = host.describe_model(&plan.params.model)?.context_length;
    let room = plan
        .params
        .max_output_tokens
        .unwrap_or(256)
        .min(context / 2);
    let prompt = crate::run::render(plan, &plan.messages, host)?;
    let used = host.tokenize(&plan.params.model, &prompt.text, true)?.len();
    let left = (context as usize).saturating_sub(room as usize + used);
    let budget = 2 * left;
    let excerpts = Excerpts::of(&found, budget, MAX_CITED);
    let in_prompt = !excerpts.text.is_empty();
    if in_prompt {
        give(&mut plan.messages, &excerpts);
    }
    let suffix = plan.id.trim_start_matches("resp_");
    plan.searched = Some(Searched {
        item: OutputItem::FileSearchCall {
            id: format!("fs_{suffix}"),
            status: "completed".into(),
            queries: vec![query],
            results: plan
                .params
                .file_search_results
                .then(|| found.iter().map(Found::shown).collect()),
        },
        cited: excerpts.cited,
        in_prompt,
    });
    Ok(())
}

/// The excerpts after the instructions (a system message first, made if there is none).
fn give(messages: &mut Vec<Message>, excerpts: &Excerpts) {
    match messages.first_mut() {
        Some(first) if first.role == "system" => {
            first.content = excerpts.into_instructions(&first.content);
        }
        _ => messages.insert(
            0,
            Message {
                role: "system".into(),
                content: excerpts.into_instructions(""),
                calls: Vec::new(),
                tool_call_id: None,
            },
        ),
    }
}
