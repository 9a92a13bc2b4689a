//! What the store can fail at, in its own terms (the plugin that asked names the parameter).

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or could not be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A schema migration failed at start-up.
    #[error("migrating the database: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A blob could not be written, read or removed.
    #[error("blob store: {0}")]
    Blob(#[source] std::io::Error),
    /// No such object (or it belongs to another owner).
    #[error("no object `{id}` in `{collection}`")]
    NotFound { collection: String, id: String },
    /// Text with a NUL character, which PostgreSQL cannot keep: refused on both databases
    /// alike. Names the field (`body`, `metadata`, `status`, ...).
    #[error("`{0}` contains a NUL character, which the store cannot keep")]
    NulCharacter(&'static str),
    /// A job can only be finished in a final state.
    #[error("a job ends succeeded, failed or cancelled, not {0}")]
    NotFinal(&'static str),
    /// A blob grew past the size it was allowed.
    #[error("a blob is at most {limit} bytes")]
    TooLarge { limit: u64 },
    /// An object or job with this id exists already.
    #[error("`{0}` exists already")]
    Duplicate(String),
    /// A compare-and-set found another version than the one expected.
    #[error("object `{id}` is at version {actual}, not {expected}")]
    Conflict {
        id: String,
        expected: i64,
        actual: i64,
    },
    /// A cursor (`after`, `before`) names no object of this listing.
    #[error("no object `{0}` to list from")]
    UnknownCursor(String),
    /// An id that the store did not make (blob ids are never built from client input).
    #[error("`{0}` is not an id this store makes")]
    InvalidId(String),
    /// A vector entry, query or search the index cannot take (the caller's mistake).
    #[error("{0}")]
    BadVector(String),
    /// A link the store cannot make (its content type), the caller's mistake.
    #[error("{0}")]
    BadLink(String),
    /// A search's pass over the vectors stopped (a panic in it, or shutdown).
    #[error("a vector search stopped: {0}")]
    SearchStopped(String),
    /// A stored row that does not read back (a bug, or a database edited by hand).
    #[error("stored object `{id}` is corrupt: {reason}")]
    Corrupt { id: String, reason: String },
}
