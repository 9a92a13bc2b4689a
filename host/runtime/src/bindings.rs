//! The host's bindings of `wit/v0.1`: the `chat-plugin` world at this module's root, and the
//! `tools-plugin`, `embeddings-plugin` and `store-plugin` worlds beside it (each adds its own
//! imports), their shared interfaces mapped onto the same Rust
//! types (and the same host implementations).

wasmtime::component::bindgen!({
    path: "../../wit/v0.1",
    world: "chat-plugin",
    imports: {
        "cinder:plugin/inference.[method]generation.next": async | trappable,
        "cinder:plugin/inference.score": async | trappable,
        "cinder:plugin/inference.next-of": async | trappable,
        // Synchronous work (tokenizing, rendering, compiling a grammar, syncing a
        // document) runs on blocking threads: the async workers keep serving.
        "cinder:plugin/inference.generate": async | trappable,
        "cinder:plugin/inference.generate-constrained": async | trappable,
        "cinder:plugin/inference.tokenize": async | trappable,
        "cinder:plugin/inference.detokenize": async | trappable,
        "cinder:plugin/inference.apply-chat-template": async | trappable,
        "cinder:plugin/inference.apply-chat-template-json": async | trappable,
        "cinder:plugin/documents.put": async | trappable,
        "cinder:plugin/documents.get": async | trappable,
        "cinder:plugin/documents.delete": async | trappable,
        "cinder:plugin/documents.page": async | trappable,
        "cinder:plugin/sink.[method]response-sink.send-event": async | trappable,
        "cinder:plugin/sink.[method]response-sink.send-named-event": async | trappable,
        "cinder:plugin/sink.[method]response-sink.respond": async | trappable,
        // Forwarded to the tools plugin, which runs in a store of its own.
        "cinder:plugin/tools.render": async | trappable,
        "cinder:plugin/tools.parse": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    with: {
        "cinder:plugin/inference.generation": crate::imports::inference::GenerationHandle,
        "cinder:plugin/sink.response-sink": crate::state::SinkHandle,
    },
});

/// Bindings for the `tools-plugin` world; the interfaces it shares with `chat-plugin` are
/// the same Rust types (and the same host implementations).
pub(crate) mod tools_world {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.1",
        world: "tools-plugin",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "cinder:plugin/types": crate::bindings::cinder::plugin::types,
            "cinder:plugin/log": crate::bindings::cinder::plugin::log,
            "cinder:plugin/inference": crate::bindings::cinder::plugin::inference,
            "cinder:plugin/config": crate::bindings::cinder::plugin::config,
        },
    });
}

/// Bindings for the `embeddings-plugin` world (`@since 0.1.4`): only its `embeddings` import
/// is new; it exports `handler` like a chat plugin, and is instantiated as one.
pub(crate) mod embeddings_world {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.1",
        world: "embeddings-plugin",
        imports: {
            "cinder:plugin/embeddings.embed": async | trappable,
            "cinder:plugin/embeddings.embed-within": async | trappable,
            "cinder:plugin/embeddings.token-spans": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "cinder:plugin/types": crate::bindings::cinder::plugin::types,
            "cinder:plugin/log": crate::bindings::cinder::plugin::log,
            "cinder:plugin/sink": crate::bindings::cinder::plugin::sink,
            "cinder:plugin/config": crate::bindings::cinder::plugin::config,
            "cinder:plugin/route": crate::bindings::cinder::plugin::route,
        },
    });
}

/// Bindings for the `store-plugin` world (`@since 0.1.7`): its `store` and `multipart` imports
/// are new (every call waits on the database, the disk or the client, so all are async); it
/// exports `handler` like a chat plugin, and is instantiated as one.
pub(crate) mod store_world {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.1",
        world: "store-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "cinder:plugin/types": crate::bindings::cinder::plugin::types,
            "cinder:plugin/log": crate::bindings::cinder::plugin::log,
            "cinder:plugin/sink": crate::bindings::cinder::plugin::sink,
            "cinder:plugin/config": crate::bindings::cinder::plugin::config,
            "cinder:plugin/route": crate::bindings::cinder::plugin::route,
            "cinder:plugin/store.blob-writer": crate::imports::store::BlobWriterHandle,
        },
    });
}

/// Bindings for the `job-plugin` world (`@since 0.1.8`): a store plugin that also imports
/// `jobs` and `dispatch` and exports `job-runner`. Its `handler` is called through the
/// `chat-plugin` bindings, like every route-serving world; its steps through these.
pub(crate) mod job_world {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.1",
        world: "job-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "cinder:plugin/types": crate::bindings::cinder::plugin::types,
            "cinder:plugin/log": crate::bindings::cinder::plugin::log,
            "cinder:plugin/sink": crate::bindings::cinder::plugin::sink,
            "cinder:plugin/config": crate::bindings::cinder::plugin::config,
            "cinder:plugin/route": crate::bindings::cinder::plugin::route,
            "cinder:plugin/store": crate::bindings::store_world::cinder::plugin::store,
            "cinder:plugin/multipart": crate::bindings::store_world::cinder::plugin::multipart,
        },
    });
}

/// Bindings for the `agent-plugin` world: only its `vectors` (`@since 0.1.12`) and `images`
/// (`@since 0.1.13`) imports are generated here; every other interface is the one the worlds above generate. Its handler
/// and steps are called through the `chat-plugin` and `job-plugin` bindings.
pub(crate) mod agent_world {
    wasmtime::component::bindgen!({
        path: "../../wit/v0.1",
        world: "agent-plugin",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "cinder:plugin/types": crate::bindings::cinder::plugin::types,
            "cinder:plugin/log": crate::bindings::cinder::plugin::log,
            "cinder:plugin/sink": crate::bindings::cinder::plugin::sink,
            "cinder:plugin/config": crate::bindings::cinder::plugin::config,
            "cinder:plugin/route": crate::bindings::cinder::plugin::route,
            "cinder:plugin/inference": crate::bindings::cinder::plugin::inference,
            "cinder:plugin/tools": crate::bindings::cinder::plugin::tools,
            "cinder:plugin/embeddings": crate::bindings::embeddings_world::cinder::plugin::embeddings,
            "cinder:plugin/store": crate::bindings::store_world::cinder::plugin::store,
            "cinder:plugin/multipart": crate::bindings::store_world::cinder::plugin::multipart,
            "cinder:plugin/jobs": crate::bindings::job_world::cinder::plugin::jobs,
            "cinder:plugin/dispatch": crate::bindings::job_world::cinder::plugin::dispatch,
            "cinder:plugin/handler": crate::bindings::exports::cinder::plugin::handler,
            "cinder:plugin/job-runner": crate::bindings::job_world::exports::cinder::plugin::job_runner,
            "cinder:plugin/images.image-generation": crate::imports::images::ImageGenerationHandle,
        },
    });
}
