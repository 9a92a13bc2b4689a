//! LoRA adapters served as models of their own: each over a loaded chat model whose weights
//! (and engine, tokenizer and template) it shares, visible to everyone (an adapter from the
//! config) or to one owner (a tenant's fine-tuned model). A request for one runs on its base
//! model's engine with the adapter on its sequence.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use crate::error::CoreError;
use crate::models::lora::LoraWeights;
use crate::registry::ModelInfo;

/// An adapter served as a model.
#[derive(Debug)]
pub struct AdapterModel {
    /// Its own id, the base's architecture and context, and a fingerprint of base and
    /// adapter together.
    pub info: ModelInfo,
    /// The id of the chat model it adapts.
    pub base: String,
    pub weights: Arc<LoraWeights>,
    /// Who may use it: a tenant (a fine-tuned model), or everyone (`None`: the config's).
    pub owner: Option<String>,
}

impl AdapterModel {
    /// Whether `owner` may use it.
    pub fn visible_to(&self, owner: &str) -> bool {
        self.owner.as_deref().is_none_or(|o| o == owner)
    }
}

/// A digest of an adapter's values, for fingerprints.
pub(crate) fn digest(w: &LoraWeights) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    w.config.rank.hash(&mut h);
    w.config.alpha.to_bits().hash(&mut h);
    for (key, p) in &w.pairs {
        key.hash(&mut h);
        p.a.iter()
            .chain(&p.b)
            .for_each(|v| v.to_bits().hash(&mut h));
    }
    format!("{:08x}", h.finish() as u32)
}

/// The adapters being served, by id.
#[derive(Default)]
pub(crate) struct Adapters {
    map: RwLock<HashMap<String, Arc<AdapterModel>>>,
}

fn poisoned() -> CoreError {
    CoreError::EngineStopped
}

impl Adapters {
    /// Adds `adapter`, replacing one of the same id and owner; an id another owner's adapter
    /// has is refused.
    pub(crate) fn insert(&self, adapter: AdapterModel) -> Result<Arc<AdapterModel>, CoreError> {
        let mut map = self.map.write().map_err(|_| poisoned())?;
        if let Some(old) = map.get(&adapter.info.id)
            && old.owner != adapter.owner
        {
            return Err(CoreError::Adapter(format!(
                "the model id `{}` is taken",
                adapter.info.id
            )));
        }
        let adapter = Arc::new(adapter);
        map.insert(adapter.info.id.clone(), adapter.clone());
        Ok(adapter)
    }

    /// The adapter `id`, if `owner` may use it.
    pub(crate) fn get(&self, id: &str, owner: &str) -> Option<Arc<AdapterModel>> {
        let map = self.map.read().ok()?;
        map.get(id).filter(|a| a.visible_to(owner)).cloned()
    }

    /// Removes the adapter `id` if it is `owner`'s own (the config's stay); whether it was.
    pub(crate) fn remove(&self, id: &str, owner: &str) -> bool {
        let Ok(mut map) = self.map.write() else {
            return false;
        };
        let own = map
            .get(id)
            .is_some_and(|a| a.owner.as_deref() == Some(owner));
        if own {
            map.remove(id);
        }
        own
    }

    /// Every adapter `owner` may use, by id.
    pub(crate) fn visible(&self, owner: &str) -> Vec<Arc<AdapterModel>> {
        let Ok(map) = self.map.read() else {
            return Vec::new();
        };
        let mut out: Vec<_> = map
            .values()
            .filter(|a| a.visible_to(owner))
            .cloned()
            .collect();
        out.sort_by(|a, b| a.info.id.cmp(&b.info.id));
        out
    }
}
