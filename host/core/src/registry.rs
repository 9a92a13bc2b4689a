//! Loaded models by id: each with its tokenizer, chat template and engine thread.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{error, info, warn};

use crate::diffusion::model::{ImageSettings, LoadedImageModel};
use crate::embed::embedder::Embedder;
use crate::embed::engine::EmbedHandle;
use crate::engine::thread::EngineHandle;
use crate::error::{CoreError, ModelKind};
use crate::formats::gguf::Gguf;
use crate::formats::template::ChatTemplate;
use crate::formats::tokenizer::Tokenizer;
use crate::models::Llama;
use crate::models::backend::BackendPreference;

/// What to load.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub id: String,
    pub path: PathBuf,
    pub backend: BackendPreference,
    /// Threads for the CPU path (`None`: every core).
    pub threads: Option<usize>,
    /// MiB of KV blocks kept for prefix reuse on the CPU path (`None`: the default).
    pub prefix_cache_mib: Option<usize>,
    /// A chat model that also serves embeddings (mean-pooled last hidden states).
    pub embeddings: bool,
    /// Control-token text in user and tool content acts as control tokens (off: it is text).
    pub raw_control_tokens: bool,
    /// What the engine runs at once and queues.
    pub engine: crate::EngineLimits,
    /// Decode steps round activations to 8 bits on the CPU path ([`Llama::set_q8_decode`]).
    pub q8_decode: bool,
    /// Every product on the CPU path on activations rounded to 8 bits, the weights re-laid
    /// for integer kernels ([`crate::quant::Activations::Q8`]).
    pub q8_products: bool,
    /// An image model's sizes, steps, guidance, scheduler and queue.
    pub image: ImageSettings,
}

impl ModelSpec {
    /// A sentence-transformers folder is an embedding model; a GGUF file, or a Hugging Face
    /// folder of a causal language model, is a chat model.
    pub fn is_embedder(&self) -> bool {
        self.path.is_dir() && !crate::formats::hf::is_causal_lm(&self.path) && !self.is_image()
    }

    /// A diffusers folder (`model_index.json`) is an image model.
    pub fn is_image(&self) -> bool {
        self.path.join("model_index.json").is_file()
    }
}

/// The prefix cache's size when the config does not say.
pub const DEFAULT_PREFIX_CACHE_MIB: usize = 64;

/// What clients and plugins may know about a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub id: String,
    pub architecture: String,
    pub context_length: u32,
    pub vocab_size: u32,
    /// The width of its hidden states (the length of its embeddings, when it serves them).
    pub hidden_size: u32,
    /// Unix seconds when it was loaded.
    pub created: u64,
    /// Backend plus a digest of the weights: changes whenever outputs may change.
    pub fingerprint: String,
}

/// One model, ready to serve.
pub struct LoadedModel {
    pub info: ModelInfo,
    pub tokenizer: Arc<Tokenizer>,
    pub template: ChatTemplate,
    pub engine: EngineHandle,
    /// Its hyper-parameters (what an adapter over it must fit).
    config: crate::models::llama::LlamaConfig,
}

impl LoadedModel {
    /// Loads a GGUF model (or a Hugging Face folder) and starts its engine thread.
    pub fn load(spec: &ModelSpec) -> Result<Self, CoreError> {
        Self::load_reporting(spec, &|_, _| {})
    }

    /// [`LoadedModel::load`], telling `progress` how many of the weights' tensors are loaded
    /// (done, total) as it goes.
    pub fn load_reporting(
        spec: &ModelSpec,
        progress: &dyn Fn(usize, usize),
    ) -> Result<Self, CoreError> {
        info!(model = %spec.id, path = %spec.path.display(), "loading model");
        // Reading a Hugging Face folder may rewrite tensors first: a slow load shows from here.
        progress(0, 1);
        let gguf = Gguf::open(&spec.path)?;
        let architecture = gguf.get_str("general.architecture")?.to_owned();
        if let Some(why) = crate::models::architecture_refusal(&architecture) {
            return Err(CoreError::Weights(why));
        }
        let tokenizer = Arc::new(Tokenizer::from_gguf(&gguf)?);
        let mut template = ChatTemplate::from_gguf(&gguf, &tokenizer)?;
        if !spec.raw_control_tokens {
            template = template.guard_control_texts(tokenizer.control_texts())?;
        }
        let threads = spec.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let acts = match spec.q8_products {
            true if crate::quant::q8_products_available() => crate::quant::Activations::Q8,
            true => {
                warn!(model = %spec.id, "activations = \"q8\" needs AVX2 or AVX-512 VNNI, which this CPU lacks: products stay on f32 activations");
                crate::quant::Activations::F32
            }
            false => crate::quant::Activations::F32,
        };
        let (model, backend) = Llama::load_as(&gguf, spec.backend, threads, acts, progress)?;
        // A token past the embedding table (a vocabulary longer than the model's) would index
        // out of it: such a file is refused, as llama.cpp refuses it.
        if tokenizer.vocab_size() > model.config().vocab_size {
            return Err(CoreError::Weights(format!(
                "the tokenizer has {} tokens; the model's embedding table {}",
                tokenizer.vocab_size(),
                model.config().vocab_size
            )));
        }
        model.set_q8_decode(spec.q8_decode);
        let config = model.config().clone();
        let fingerprint = format!("fp_{}_{}", backend.name(), weights_digest(&gguf));
        let prefix_bytes = spec.prefix_cache_mib.unwrap_or(DEFAULT_PREFIX_CACHE_MIB) << 20;
        let engine = EngineHandle::spawn(
            &spec.id,
            model,
            tokenizer.clone(),
            prefix_bytes,
            spec.engine,
        )?;
        let created = unix_now();
        info!(model = %spec.id, backend = backend.name(), context = config.context_length, "model ready");
        Ok(LoadedModel {
            info: ModelInfo {
                id: spec.id.clone(),
                architecture,
                context_length: config.context_length as u32,
                vocab_size: tokenizer.vocab_size() as u32,
                hidden_size: config.dim as u32,
                created,
                fingerprint,
            },
            tokenizer,
            template,
            engine,
            config,
        })
    }

    pub fn config(&self) -> &crate::models::llama::LlamaConfig {
        &self.config
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What clients and plugins may know about an embedding model.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedderInfo {
    pub id: String,
    /// `bert`, from the folder's `config.json`.
    pub architecture: String,
    /// The vector length.
    pub dimensions: u32,
    /// Tokens per input, special tokens included; longer inputs are truncated or refused.
    pub max_tokens: u32,
    /// Whether vectors come out with unit length.
    pub normalized: bool,
    /// Unix seconds when it was loaded.
    pub created: u64,
    /// Backend plus a digest of the weights.
    pub fingerprint: String,
}

/// One embedding model, ready to serve.
pub struct LoadedEmbedder {
    pub info: EmbedderInfo,
    pub engine: EmbedHandle,
}

impl LoadedEmbedder {
    /// Loads a sentence-transformers folder and starts its batching thread.
    pub fn load(spec: &ModelSpec) -> Result<Self, CoreError> {
        info!(model = %spec.id, path = %spec.path.display(), "loading embedding model");
        let (embedder, backend) = Embedder::load(&spec.path, spec.backend, spec.threads)?;
        let size = std::fs::metadata(spec.path.join("model.safetensors"))
            .map(|m| m.len())
            .unwrap_or(0);
        let config = std::fs::read(spec.path.join("config.json")).unwrap_or_default();
        let digest = fnv(config.iter().copied().chain(size.to_le_bytes()));
        let info = EmbedderInfo {
            id: spec.id.clone(),
            architecture: embedder.architecture().to_owned(),
            dimensions: embedder.dimensions() as u32,
            max_tokens: embedder.max_tokens() as u32,
            normalized: embedder.normalized(),
            created: unix_now(),
            fingerprint: format!("fp_{}_{:08x}", backend.name(), digest as u32),
        };
        let engine = EmbedHandle::spawn(&spec.id, embedder)?;
        info!(model = %spec.id, backend = backend.name(), dimensions = info.dimensions, "embedding model ready");
        Ok(LoadedEmbedder { info, engine })
    }

    /// A chat model's embeddings: its final-normed hidden states averaged over the input's
    /// tokens, unit length, any input up to its context length.
    pub fn from_chat_model(model: &LoadedModel) -> Self {
        let i = &model.info;
        LoadedEmbedder {
            info: EmbedderInfo {
                id: i.id.clone(),
                architecture: i.architecture.clone(),
                dimensions: i.hidden_size,
                max_tokens: i.context_length,
                normalized: true,
                created: i.created,
                fingerprint: i.fingerprint.clone(),
            },
            engine: EmbedHandle::for_chat_model(model.engine.clone()),
        }
    }
}

pub(crate) fn fnv(bytes: impl Iterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    h
}

/// A short digest of the tensor layout and metadata size: cheap, and different for different
/// weights files in practice (hashing 100 MB on every start is not worth it).
fn weights_digest(gguf: &Gguf) -> String {
    let mut names: Vec<_> = gguf
        .tensors
        .values()
        .map(|t| (t.name.as_str(), t.offset, t.dims.clone()))
        .collect();
    names.sort();
    let h = fnv(names.into_iter().flat_map(|(name, offset, dims)| {
        name.bytes()
            .chain(offset.to_le_bytes())
            .chain(dims.into_iter().flat_map(|d| d.to_le_bytes()))
            .collect::<Vec<_>>()
    }));
    format!("{:08x}", h as u32)
}

/// Every loaded model, by id: chat models and embedding models share one namespace.
#[derive(Default)]
pub struct ModelRegistry {
    models: HashMap<String, Arc<LoadedModel>>,
    embedders: HashMap<String, Arc<LoadedEmbedder>>,
    images: HashMap<String, Arc<LoadedImageModel>>,
    /// Every id, chat, embedding and image, in configuration order.
    order: Vec<String>,
    /// Other names for loaded models (alias → id), as OpenAI tools expect (`gpt-4o-mini`);
    /// replaced as a whole when the config changes.
    aliases: std::sync::RwLock<HashMap<String, String>>,
    /// Configured models that did not load (id → why), so a request for one says why.
    failed: HashMap<String, String>,
    /// LoRA adapters served as models over the chat models.
    adapters: crate::adapters::Adapters,
}

impl ModelRegistry {
    /// Loads every model in `specs`. One that fails (an architecture or tensor type Cinder
    /// does not run, a damaged file) is logged and left out, and requests for it get the
    /// reason; the others serve. Only when none loads is it an error (the first failure).
    pub fn load_all(specs: &[ModelSpec]) -> Result<Self, CoreError> {
        Self::load_all_reporting(specs, &|_, _, _| {})
    }

    /// [`ModelRegistry::load_all`], telling `progress` how far each chat model's load has got
    /// (model id, tensors done, tensors in all): the server shows it for slow loads.
    pub fn load_all_reporting(
        specs: &[ModelSpec],
        progress: &dyn Fn(&str, usize, usize),
    ) -> Result<Self, CoreError> {
        let mut reg = ModelRegistry::default();
        let mut first_error = None;
        for spec in specs {
            let loaded = if spec.is_image() {
                LoadedImageModel::load(&spec.id, &spec.path, spec.backend, &spec.image, unix_now())
                    .map(|m| reg.insert_image_model(m))
            } else if spec.is_embedder() {
                LoadedEmbedder::load(spec).map(|e| reg.insert_embedder(e))
            } else {
                LoadedModel::load_reporting(spec, &|done, total| progress(&spec.id, done, total))
                    .map(|model| {
                        if spec.embeddings {
                            reg.insert_embedder(LoadedEmbedder::from_chat_model(&model));
                        }
                        reg.insert(model);
                    })
            };
            if let Err(e) = loaded {
                error!(model = %spec.id, path = %spec.path.display(), error = %e,
                    "the model did not load; the others serve");
                reg.failed
                    .insert(spec.id.clone(), format!("{e} ({})", spec.path.display()));
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) if reg.order.is_empty() => Err(e),
            _ => Ok(reg),
        }
    }

    /// Serves `weights` as the model `id` over the chat model `base` (for `owner` only, or
    /// for everyone): an id that names a model or alias, or another owner's adapter, is
    /// refused, and so is an adapter that does not fit the base.
    pub fn add_adapter(
        &self,
        id: &str,
        base: &str,
        weights: crate::models::lora::LoraWeights,
        owner: Option<&str>,
    ) -> Result<Arc<crate::adapters::AdapterModel>, CoreError> {
        if id.is_empty() || self.resolve(id)?.is_some() {
            return Err(CoreError::Adapter(format!(
                "`{id}` is empty or names a model"
            )));
        }
        let model = self.get(base)?;
        weights.check_shapes(model.config())?;
        let info = ModelInfo {
            id: id.to_owned(),
            created: unix_now(),
            fingerprint: format!(
                "{}_lora_{}",
                model.info.fingerprint,
                crate::adapters::digest(&weights)
            ),
            ..model.info.clone()
        };
        self.adapters.insert(crate::adapters::AdapterModel {
            info,
            base: model.info.id.clone(),
            weights: Arc::new(weights),
            owner: owner.map(str::to_owned),
        })
    }

    /// Serves the PEFT adapter folder `dir` as the model `id` over `base`, for everyone.
    pub fn load_adapter_folder(
        &self,
        id: &str,
        base: &str,
        dir: &std::path::Path,
    ) -> Result<Arc<crate::adapters::AdapterModel>, CoreError> {
        let model = self.get(base)?;
        let weights =
            crate::models::lora_peft::read_peft(dir, model.config(), &model.info.architecture)?;
        self.add_adapter(id, base, weights, None)
    }

    /// The adapter served as `id`, if `owner` may use it.
    pub fn adapter(&self, id: &str, owner: &str) -> Option<Arc<crate::adapters::AdapterModel>> {
        self.adapters.get(id, owner)
    }

    /// Stops serving `owner`'s adapter `id`; false if there is none of theirs.
    pub fn remove_adapter(&self, id: &str, owner: &str) -> bool {
        self.adapters.remove(id, owner)
    }

    /// Every adapter `owner` may use.
    pub fn adapters_for(&self, owner: &str) -> Vec<Arc<crate::adapters::AdapterModel>> {
        self.adapters.visible(owner)
    }

    /// Configured models that did not load, with why.
    pub fn failed(&self) -> &HashMap<String, String> {
        &self.failed
    }

    /// Adds a chat model (replacing one with its id).
    pub fn insert(&mut self, model: LoadedModel) {
        let id = model.info.id.clone();
        self.listed(&id);
        self.models.insert(id, Arc::new(model));
    }

    /// Adds an embedding model (replacing one with its id); a chat model with the same id
    /// serves both.
    pub fn insert_embedder(&mut self, model: LoadedEmbedder) {
        let id = model.info.id.clone();
        self.listed(&id);
        self.embedders.insert(id, Arc::new(model));
    }

    /// Adds an image model (replacing one with its id).
    pub fn insert_image_model(&mut self, model: LoadedImageModel) {
        let id = model.info.id.clone();
        self.listed(&id);
        self.images.insert(id, Arc::new(model));
    }

    fn listed(&mut self, id: &str) {
        if !self.order.iter().any(|o| o == id) {
            self.order.push(id.to_owned());
        }
    }

    /// The id `name` stands for (itself, or the id an alias names); `None` if no model has it.
    /// An exact match wins; otherwise ids and aliases match regardless of case, as model
    /// hubs and READMEs spell them (`all-MiniLM-L6-v2` for `all-minilm-l6-v2`).
    fn resolve(&self, name: &str) -> Result<Option<String>, CoreError> {
        if self.is_loaded(name) {
            return Ok(Some(name.to_owned()));
        }
        let aliases = self.aliases.read().map_err(|_| CoreError::EngineStopped)?;
        if let Some(id) = aliases.get(name) {
            return Ok(Some(id.clone()));
        }
        let folded = name.to_lowercase();
        let same = |other: &str| other.to_lowercase() == folded;
        if let Some(id) = self.order.iter().find(|id| same(id)) {
            return Ok(Some(id.clone()));
        }
        let mut matching: Vec<(&String, &String)> =
            aliases.iter().filter(|(alias, _)| same(alias)).collect();
        matching.sort();
        Ok(matching.first().map(|(_, id)| (*id).clone()))
    }

    /// The canonical id of the model called `name` (id or alias, any case).
    pub fn canonical(&self, name: &str) -> Option<String> {
        self.resolve(name).ok().flatten()
    }

    /// The model called `name` (id or alias) in `kind`'s map; a model of the other kind is a
    /// client error saying `wrong_kind`. Every id `resolve` finds is in one map or the other
    /// (aliases are checked when set).
    fn lookup<T>(
        &self,
        name: &str,
        kind: &HashMap<String, Arc<T>>,
        wanted: ModelKind,
    ) -> Result<Arc<T>, CoreError> {
        let Some(id) = self.resolve(name)? else {
            if let Some(reason) = self.failed.get(name) {
                return Err(CoreError::ModelNotLoaded {
                    model: name.to_owned(),
                    reason: reason.clone(),
                });
            }
            return Err(CoreError::UnknownModel(name.to_owned()));
        };
        kind.get(&id).cloned().ok_or_else(|| CoreError::WrongKind {
            model: name.to_owned(),
            wanted,
            is: self.kind_of(&id),
        })
    }

    /// Whether `id` is a loaded model's id (any kind).
    pub fn is_loaded(&self, id: &str) -> bool {
        self.models.contains_key(id)
            || self.embedders.contains_key(id)
            || self.images.contains_key(id)
    }

    /// What the loaded model `id` is (a chat model that also embeds is a generator).
    fn kind_of(&self, id: &str) -> ModelKind {
        if self.models.contains_key(id) {
            ModelKind::Generator
        } else if self.images.contains_key(id) {
            ModelKind::Image
        } else {
            ModelKind::Embedder
        }
    }

    /// The image model called `name`: its id or one of its aliases.
    pub fn image_model(&self, name: &str) -> Result<Arc<LoadedImageModel>, CoreError> {
        self.lookup(name, &self.images, ModelKind::Image)
    }

    /// The text-generation model called `name`: its id or one of its aliases.
    pub fn get(&self, name: &str) -> Result<Arc<LoadedModel>, CoreError> {
        self.lookup(name, &self.models, ModelKind::Generator)
    }

    /// The embedding model called `name`: its id or one of its aliases.
    pub fn embedder(&self, name: &str) -> Result<Arc<LoadedEmbedder>, CoreError> {
        self.lookup(name, &self.embedders, ModelKind::Embedder)
    }

    /// When the model called `name` (id or alias, of either kind) was loaded.
    pub fn created(&self, name: &str) -> Option<u64> {
        let id = self.resolve(name).ok()??;
        self.models
            .get(&id)
            .map(|m| m.info.created)
            .or_else(|| self.embedders.get(&id).map(|m| m.info.created))
            .or_else(|| self.images.get(&id).map(|m| m.info.created))
    }

    /// Replaces every alias (alias → model id). Refused as a whole, leaving the old ones in
    /// place, when an alias names a model that is not loaded or shadows a model id.
    pub fn set_aliases(&self, aliases: HashMap<String, String>) -> Result<(), CoreError> {
        let known = |id: &str| self.is_loaded(id);
        let shadows = |alias: &str| {
            let folded = alias.to_lowercase();
            self.order.iter().any(|id| id.to_lowercase() == folded)
        };
        for (alias, id) in &aliases {
            if !known(id) {
                return Err(CoreError::InvalidAlias(format!(
                    "alias `{alias}` names `{id}`, which is not loaded"
                )));
            }
            if shadows(alias) {
                return Err(CoreError::InvalidAlias(format!(
                    "alias `{alias}` is already a model id (ids match in any case)"
                )));
            }
        }
        let mut slot = self.aliases.write().map_err(|_| CoreError::EngineStopped)?;
        *slot = aliases;
        Ok(())
    }

    /// Every alias with the model id it names, sorted by alias.
    pub fn aliases(&self) -> Vec<(String, String)> {
        let mut all: Vec<_> = self
            .aliases
            .read()
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        all.sort();
        all
    }

    /// Text-generation models in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<LoadedModel>> {
        self.order.iter().filter_map(|id| self.models.get(id))
    }

    /// Every model's id, chat, embedding and image, in configuration order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_must_name_a_loaded_model() {
        let reg = ModelRegistry::default();
        let bad = HashMap::from([("gpt-4o-mini".to_string(), "missing".to_string())]);
        assert!(reg.set_aliases(bad).is_err());
        assert!(reg.aliases().is_empty());
        assert!(matches!(
            reg.get("gpt-4o-mini"),
            Err(CoreError::UnknownModel(_))
        ));
        assert!(reg.set_aliases(HashMap::new()).is_ok());
    }
}
