#![doc = include_str!("../README.md")]

mod blobs;
mod error;
mod ids;
mod jobs;
mod links;
mod objects;
mod vectors;

pub use blobs::{Blob, BlobWriter, Pending};
pub use error::StoreError;
pub use ids::{is_store_id, new_id};
pub use jobs::{Job, JobState, NewJob, Renewal};
pub use links::{SharedBlob, is_link_token};
pub use objects::{Change, Key, ListQuery, NewObject, Object, Order, Page};
pub use vectors::{IndexKey, MAX_K, VectorEntry, VectorHit};

use std::path::Path;

use sqlx::Executor;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::pool::PoolOptions;
use sqlx::{Any, AssertSqlSafe, Pool, SqlSafeStr, SqlStr};

/// Seconds since the Unix epoch (objects' `created_at`, jobs' clock).
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Which database holds the objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A file under the storage folder: the embedded default.
    Sqlite,
    /// A server several Cinder replicas share.
    Postgres,
}

/// The schema's versions, applied in order at start-up (the same files on both databases).
/// Embedded here rather than by sqlx's `migrate!` macro: no proc-macro crate to build.
const MIGRATIONS: [(i64, &str, &str); 8] = [
    (1, "objects", include_str!("../migrations/0001_objects.sql")),
    (2, "jobs", include_str!("../migrations/0002_jobs.sql")),
    (3, "blobs", include_str!("../migrations/0003_blobs.sql")),
    (
        4,
        "counters",
        include_str!("../migrations/0004_counters.sql"),
    ),
    (
        5,
        "pending_blobs",
        include_str!("../migrations/0005_pending_blobs.sql"),
    ),
    (
        6,
        "job_not_before",
        include_str!("../migrations/0006_job_not_before.sql"),
    ),
    (7, "vectors", include_str!("../migrations/0007_vectors.sql")),
    (
        8,
        "blob_links",
        include_str!("../migrations/0008_blob_links.sql"),
    ),
];

fn migrator() -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    (*name).into(),
                    MigrationType::Simple,
                    AssertSqlSafe(*sql).into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// Cinder's durable state: objects in a database, blobs in a folder.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool<Any>,
    backend: Backend,
    blobs: blobs::Folder,
    /// Vector indexes' in-memory copies, shared by the store's clones.
    vectors: std::sync::Arc<vectors::Cache>,
}

impl Store {
    /// Opens (creating it if needed) the store: objects in `url`'s PostgreSQL database when
    /// given, else in `dir/cinder.db` (SQLite, WAL); blobs under `dir` either way. Pending
    /// migrations are applied.
    pub async fn open(dir: &Path, url: Option<&str>) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(StoreError::Blob)?;
        let (url, backend, connections) = match url {
            Some(u) => (u.to_owned(), Backend::Postgres, 8),
            None => {
                let file = dir.join("cinder.db");
                (
                    format!("sqlite://{}?mode=rwc", file.display()),
                    Backend::Sqlite,
                    4,
                )
            }
        };
        let pool = PoolOptions::<Any>::new()
            .max_connections(connections)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers never wait for the writer; a writer waits its turn
                        // (busy timeout) instead of failing; every commit reaches the disk.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        migrator().run(&pool).await?;
        let store = Store {
            pool,
            backend,
            blobs: blobs::Folder::open(dir).await?,
            vectors: std::sync::Arc::default(),
        };
        store.sweep_unindexed_blobs().await?;
        Ok(store)
    }

    /// Which database this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The next number of `counter` (`objects`, `jobs`), taken inside `tx`: the counter row
    /// stays locked until `tx` ends, so concurrent creates (on any replica) queue behind it.
    async fn next_seq(
        &self,
        tx: &mut sqlx::Transaction<'_, Any>,
        counter: &str,
    ) -> Result<i64, StoreError> {
        let q = self.sql("UPDATE counters SET n = n + 1 WHERE name = ? RETURNING n");
        let row = sqlx::query(q.clone())
            .bind(counter)
            .fetch_one(&mut **tx)
            .await?;
        Ok(sqlx::Row::try_get(&row, "n")?)
    }

    /// `sql` with `?` placeholders in this database's syntax (`$1`, `$2`, ... for
    /// PostgreSQL). Queries are written once, with `?`, and contain no `?` otherwise.
    fn sql(&self, sql: &str) -> SqlStr {
        AssertSqlSafe(match self.backend {
            Backend::Sqlite => sql.to_owned(),
            Backend::Postgres => {
                let mut out = String::with_capacity(sql.len() + 16);
                let mut n = 0;
                for c in sql.chars() {
                    if c == '?' {
                        n += 1;
                        out.push('$');
                        out.push_str(&n.to_string());
                    } else {
                        out.push(c);
                    }
                }
                out
            }
        })
        .into_sql_str()
    }
}
