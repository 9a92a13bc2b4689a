//! Exact search over stores' indexes, and the excerpts a model reads from the results.

use std::collections::HashMap;

use serde_json::{Value, json};

use cinder_sdk::Error;
use cinder_sdk::embeddings::{EmbedInput, Overflow};
use cinder_sdk::host::Host;
use cinder_sdk::openai::params::Invalid;
use cinder_sdk::openai::params::filters::Filter;
use cinder_sdk::store::Object;

use crate::{FILES, SPACE, body_of, each, expired, find_store, model_of, touch};

/// One result: a chunk of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub file_id: String,
    /// The file's name (empty if the file itself was deleted since).
    pub filename: String,
    /// Cosine similarity to the closest query.
    pub score: f32,
    pub text: String,
    /// The file's attributes in its store.
    pub attributes: Value,
}

impl Found {
    /// As a search page and a `file_search_call`'s `results` show it.
    pub fn shown(&self) -> Value {
        json!({"file_id": self.file_id, "filename": self.filename, "score": self.score,
               "attributes": self.attributes, "text": self.text})
    }
}

/// The `k` chunks of `store` (made with embedding `model`) most similar to any of `queries`,
/// best first, among its completed files whose attributes pass `filter`, none scoring under
/// `threshold`.
pub fn search(
    host: &dyn Host,
    store: &str,
    model: &str,
    queries: &[String],
    k: u32,
    filter: Option<&Filter>,
    threshold: f32,
) -> Result<Vec<Found>, Error> {
    let mut attributes: HashMap<String, Value> = HashMap::new();
    let by_store = [("vector_store".to_owned(), store.to_owned())];
    each(host, FILES, &by_store, Some("completed"), |o| {
        let b = body_of(o, "vector store file")?;
        let attrs = b["attributes"].as_object().cloned().unwrap_or_default();
        if filter.is_none_or(|f| f.matches(&attrs)) {
            let id = b["file_id"].as_str().unwrap_or_default().to_owned();
            attributes.insert(id, Value::Object(attrs));
        }
        Ok(())
    })?;
    if attributes.is_empty() || queries.is_empty() {
        return Ok(Vec::new());
    }
    let groups: Vec<String> = attributes.keys().cloned().collect();
    let inputs: Vec<EmbedInput> = queries
        .iter()
        .map(|q| EmbedInput::Text(q.clone()))
        .collect();
    let embedded = host.embed(model, &inputs, Overflow::Truncate)?;
    let mut best: HashMap<String, Found> = HashMap::new();
    for v in &embedded.vectors {
        for hit in host.search_vectors(SPACE, store, v, k, Some(&groups))? {
            if hit.score < threshold {
                continue;
            }
            let text = serde_json::from_str::<Value>(&hit.payload)
                .ok()
                .and_then(|p| p["text"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let found = Found {
                attributes: attributes.get(&hit.group).cloned().unwrap_or(json!({})),
                file_id: hit.group,
                filename: String::new(),
                score: hit.score,
                text,
            };
            match best.get(&hit.id) {
                Some(f) if f.score >= found.score => {}
                _ => {
                    best.insert(hit.id, found);
                }
            }
        }
    }
    let mut out: Vec<Found> = best.into_values().collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out.truncate(k as usize);
    name_files(host, &mut out);
    Ok(out)
}

/// Fills in each result's file name (a file deleted since keeps an empty one).
fn name_files(host: &dyn Host, found: &mut [Found]) {
    let mut names: HashMap<String, String> = HashMap::new();
    for f in found {
        f.filename = names
            .entry(f.file_id.clone())
            .or_insert_with(|| {
                cinder_sdk::files::load(host, &f.file_id)
                    .map(|(_, file)| file.filename)
                    .unwrap_or_default()
            })
            .clone();
    }
}

/// A store a tool searches: found (404 otherwise), not expired (400 naming `param`), with its
/// embedding model (`default_model` for a store that names none).
fn usable(
    host: &dyn Host,
    id: &str,
    param: &str,
    default_model: &str,
) -> Result<(Object, String), Error> {
    let store = find_store(host, id)?;
    if expired(&store)? {
        return Err(Invalid::new(format!("Vector store {id} has expired."), param).into());
    }
    let model = model_of(&store)?.unwrap_or_else(|| default_model.to_owned());
    Ok((store, model))
}

/// What a file_search tool asks of its stores.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub query: &'a str,
    /// Results kept at most.
    pub k: u32,
    pub filter: Option<&'a Filter>,
    /// Results scoring under it are left out.
    pub threshold: f32,
}

/// The best chunks for `ask` across `stores` (the file_search tool's search), best first;
/// each store is marked active. An unknown store is a 404, an expired one a 400 naming
/// `param`; a store that names no embedding model is searched with `default_model`.
pub fn search_stores(
    host: &dyn Host,
    stores: &[String],
    param: &str,
    default_model: &str,
    ask: Ask<'_>,
) -> Result<Vec<Found>, Error> {
    let usable = stores
        .iter()
        .map(|id| usable(host, id, param, default_model))
        .collect::<Result<Vec<_>, _>>()?;
    let queries = [ask.query.to_owned()];
    let mut all = Vec::new();
    for (store, model) in &usable {
        all.extend(search(
            host,
            &store.id,
            model,
            &queries,
            ask.k,
            ask.filter,
            ask.threshold,
        )?);
        touch(host, store)?;
    }
    all.sort_by(|a, b| b.score.total_cmp(&a.score));
    all.truncate(ask.k as usize);
    Ok(all)
}

/// The best results as a model reads them: numbered excerpts within a character budget, and
/// the files they came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Excerpts {
    /// `[i] (file name) text` lines.
    pub text: String,
    /// (file id, file name) of the excerpts' files, best first, each once, at most `cite`.
    pub cited: Vec<(String, String)>,
}

impl Excerpts {
    /// The results, best first, until the next would pass `budget` characters.
    pub fn of(found: &[Found], budget: usize, cite: usize) -> Excerpts {
        let mut out = Excerpts::default();
        for (i, f) in found.iter().enumerate() {
            let entry = format!("[{i}] ({}) {}\n", f.filename, f.text);
            if out.text.len() + entry.len() > budget {
                break;
            }
            out.text.push_str(&entry);
            if out.cited.len() < cite && !out.cited.iter().any(|c| c.0 == f.file_id) {
                out.cited.push((f.file_id.clone(), f.filename.clone()));
            }
        }
        out
    }

    /// `instructions` with the excerpts after them.
    pub fn into_instructions(&self, instructions: &str) -> String {
        let mut out = instructions.to_owned();
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str("Answer with the help of these excerpts from the user's files:\n");
        out.push_str(&self.text);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(file: &str, text: &str) -> Found {
        Found {
            file_id: file.into(),
            filename: format!("{file}.txt"),
            score: 0.5,
            text: text.into(),
            attributes: json!({}),
        }
    }

    #[test]
    fn excerpts_stop_at_the_budget_and_cite_each_file_once() {
        let results = [
            found("a", "tea"),
            found("a", "more tea"),
            found("b", "coffee"),
        ];
        let all = Excerpts::of(&results, 10_000, 3);
        assert_eq!(all.text.lines().count(), 3);
        assert_eq!(
            all.cited,
            vec![("a".into(), "a.txt".into()), ("b".into(), "b.txt".into())]
        );
        let first = Excerpts::of(&results, 20, 3);
        assert_eq!(first.text, "[0] (a.txt) tea\n");
        assert_eq!(first.cited.len(), 1);
        assert!(Excerpts::of(&results, 5, 3).text.is_empty());
        let one = Excerpts::of(&results, 10_000, 1);
        assert_eq!(one.cited.len(), 1);
        assert!(
            one.into_instructions("Be brief.")
                .starts_with("Be brief.\n\nAnswer")
        );
    }
}
