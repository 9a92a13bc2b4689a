//! Blobs (file contents): bytes in a folder, an index row in the database. A blob is written
//! in chunks to a temporary file, synced, renamed to the id the store made, and only then
//! indexed with its owner, size and MD5, so it is either whole and listed or absent. A crash
//! leaves only temporaries (cleared at the next start) or an unindexed file (never served).
//! Nothing is ever held whole in memory, and no path is built from client input: ids are the
//! store's own, checked before any path is made.

use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use sqlx::Row;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::{Store, StoreError, ids};

/// A stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub id: String,
    pub bytes: u64,
    /// MD5 of the content, lowercase hex.
    pub md5: String,
    pub created_at: i64,
}

/// The blob folder.
#[derive(Debug, Clone)]
pub(crate) struct Folder {
    dir: PathBuf,
}

/// How long a temporary must sit untouched before a start removes it.
const STALE: std::time::Duration = std::time::Duration::from_secs(3600);

/// What the `job` column of a blob pending on a request starts with (job ids never do).
const REQUEST_PENDING: &str = "request:";

/// Chunks copied between files by [`Store::concat_blobs`].
const COPY_CHUNK: usize = 1 << 20;

fn io(e: std::io::Error) -> StoreError {
    StoreError::Blob(e)
}

impl Folder {
    /// The blobs under `dir` (`dir/blobs`, temporaries in `dir/blobs/tmp`); removes
    /// temporaries a crash left behind. Replicas may share the folder, so only those untouched
    /// for [`STALE`] go: a live upload writes to its temporary far more often than that.
    pub(crate) async fn open(dir: &Path) -> Result<Folder, StoreError> {
        let dir = dir.join("blobs");
        let tmp = dir.join("tmp");
        tokio::fs::create_dir_all(&tmp).await.map_err(io)?;
        let mut entries = tokio::fs::read_dir(&tmp).await.map_err(io)?;
        while let Some(entry) = entries.next_entry().await.map_err(io)? {
            if stale(&entry.path()).await {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
        Ok(Folder { dir })
    }

    fn path(&self, id: &str) -> Result<PathBuf, StoreError> {
        if !ids::is_store_id(id) {
            return Err(StoreError::InvalidId(id.to_owned()));
        }
        Ok(self.dir.join(id))
    }
}

/// Whether the file at `path` has sat untouched for [`STALE`].
async fn stale(path: &Path) -> bool {
    tokio::fs::metadata(path)
        .await
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > STALE)
}

/// Ids looked up in the index per query while sweeping.
const SWEEP_BATCH: usize = 500;

impl Store {
    /// Removes blob files that no index row names and that have sat for [`STALE`]: a crash
    /// between a blob's rename and its index row leaves one (never served, only taking room).
    /// A fresh one may be a replica's blob a moment before its row commits, so it stays.
    /// Returns how many went.
    pub(crate) async fn sweep_unindexed_blobs(&self) -> Result<usize, StoreError> {
        let mut candidates = Vec::new();
        let mut entries = tokio::fs::read_dir(&self.blobs.dir).await.map_err(io)?;
        while let Some(entry) = entries.next_entry().await.map_err(io)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("blob-") && ids::is_store_id(&name) && stale(&entry.path()).await {
                candidates.push(name);
            }
        }
        let mut removed = 0;
        for batch in candidates.chunks(SWEEP_BATCH) {
            let marks = vec!["?"; batch.len()].join(", ");
            let q = self.sql(&format!("SELECT id FROM blobs WHERE id IN ({marks})"));
            let mut query = sqlx::query(q.clone());
            for id in batch {
                query = query.bind(id);
            }
            let indexed: std::collections::HashSet<String> = query
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>("id"))
                .collect::<Result<_, _>>()?;
            for id in batch.iter().filter(|id| !indexed.contains(*id)) {
                if tokio::fs::remove_file(self.blobs.path(id)?).await.is_ok() {
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            tracing::info!(
                removed,
                "removed blob files no index row named (left by a crash)"
            );
        }
        Ok(removed)
    }
}

/// What a new blob waits for before it is kept for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending<'a> {
    /// Nothing: kept once finished.
    Nothing,
    /// A step of `job` run by `holder` writes it: kept when that holder saves the step's
    /// progress ([`Store::commit_step`]) or ends the job; removed by the next process that
    /// takes the job ([`Store::discard_pending_blobs`]).
    Step { job: &'a str, holder: &'a str },
    /// The request with this id writes it: kept when the request records an object
    /// ([`NewObject::keeps`](crate::NewObject::keeps), [`Change::keeps`](crate::Change::keeps));
    /// removed by [`Store::sweep_request_blobs`] if the request ends without one.
    Request(&'a str),
}

impl<'a> From<Option<(&'a str, &'a str)>> for Pending<'a> {
    /// A job step's (job, holder), or nothing.
    fn from(step: Option<(&'a str, &'a str)>) -> Self {
        match step {
            Some((job, holder)) => Pending::Step { job, holder },
            None => Pending::Nothing,
        }
    }
}

/// A blob being written: [`BlobWriter::finish`] makes it durable and visible; dropping the
/// writer before that removes what was written.
#[derive(Debug)]
pub struct BlobWriter {
    store: Store,
    owner: String,
    file: Option<File>,
    tmp: PathBuf,
    written: u64,
    max_bytes: u64,
    md5: Md5,
    /// What it is pending on, as the `job` and `job_holder` columns hold it.
    job: Option<(String, String)>,
}

impl Store {
    /// Starts a blob of `owner`'s that may grow to `max_bytes`.
    pub async fn blob_writer(&self, owner: &str, max_bytes: u64) -> Result<BlobWriter, StoreError> {
        let tmp = self.blobs.dir.join("tmp").join(ids::new_id("part-"));
        let file = File::create(&tmp).await.map_err(io)?;
        Ok(BlobWriter {
            store: self.clone(),
            owner: owner.to_owned(),
            file: Some(file),
            tmp,
            written: 0,
            max_bytes,
            md5: Md5::new(),
            job: None,
        })
    }

    /// Removes the blobs still pending on `job` (written by steps whose progress was never
    /// saved, by any process); how many. Only the process holding the job's lease calls it.
    pub async fn discard_pending_blobs(&self, job: &str) -> Result<usize, StoreError> {
        let q = self.sql("SELECT id, owner FROM blobs WHERE job = ?");
        let rows = sqlx::query(q.clone())
            .bind(job)
            .fetch_all(&self.pool)
            .await?;
        self.delete_rows(rows).await
    }

    /// Removes the blobs still pending on a request (see [`Pending::Request`])
    /// that were finished before `before` (unix seconds): their request is over, so no
    /// object will ever name them (a crash between a blob and its object leaves one, as does
    /// a plugin that fails after writing). Any process may call it; how many went.
    pub async fn sweep_request_blobs(&self, before: i64) -> Result<usize, StoreError> {
        let q = self.sql("SELECT id, owner FROM blobs WHERE job LIKE ? AND created_at < ?");
        let rows = sqlx::query(q.clone())
            .bind(format!("{REQUEST_PENDING}%"))
            .bind(before)
            .fetch_all(&self.pool)
            .await?;
        let removed = self.delete_rows(rows).await?;
        if removed > 0 {
            tracing::info!(
                removed,
                "removed blobs whose request ended before naming them"
            );
        }
        Ok(removed)
    }

    /// Deletes the blobs of `rows` (`id`, `owner`); how many were there.
    async fn delete_rows(&self, rows: Vec<sqlx::any::AnyRow>) -> Result<usize, StoreError> {
        let mut removed = 0;
        for row in rows {
            let id: String = row.try_get("id")?;
            let owner: String = row.try_get("owner")?;
            if self.delete_blob(&owner, &id).await? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Keeps the blobs pending on `request` (the request recorded an object that may name
    /// them), inside the transaction that records it.
    pub(crate) async fn keep_request_blobs(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        request: &str,
    ) -> Result<(), StoreError> {
        let q = self.sql("UPDATE blobs SET job = NULL, job_holder = NULL WHERE job = ?");
        sqlx::query(q.clone())
            .bind(format!("{REQUEST_PENDING}{request}"))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// The blob `id`, if it exists and is `owner`'s.
    pub async fn blob(&self, owner: &str, id: &str) -> Result<Option<Blob>, StoreError> {
        if !ids::is_store_id(id) {
            return Ok(None);
        }
        let q = self.sql("SELECT id, bytes, md5, created_at FROM blobs WHERE id = ? AND owner = ?");
        let row = sqlx::query(q.clone())
            .bind(id)
            .bind(owner)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let bytes: i64 = row.try_get("bytes")?;
        Ok(Some(Blob {
            id: row.try_get("id")?,
            bytes: u64::try_from(bytes).unwrap_or(0),
            md5: row.try_get("md5")?,
            created_at: row.try_get("created_at")?,
        }))
    }

    /// `owner`'s blob `id` opened for reading, with its record.
    pub async fn open_blob(
        &self,
        owner: &str,
        id: &str,
    ) -> Result<Option<(Blob, File)>, StoreError> {
        let Some(blob) = self.blob(owner, id).await? else {
            return Ok(None);
        };
        match File::open(self.blobs.path(id)?).await {
            Ok(file) => Ok(Some((blob, file))),
            // Indexed but gone (deleted a moment ago by another request): not found.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    /// Up to `len` bytes of `owner`'s blob `id` from `offset` (fewer only at its end).
    pub async fn read_blob(
        &self,
        owner: &str,
        id: &str,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, StoreError> {
        let Some((blob, mut file)) = self.open_blob(owner, id).await? else {
            return Err(StoreError::NotFound {
                collection: "blobs".into(),
                id: id.to_owned(),
            });
        };
        let len = len.min(usize::try_from(blob.bytes.saturating_sub(offset)).unwrap_or(usize::MAX));
        let mut out = vec![0; len];
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(io)?;
        file.read_exact(&mut out).await.map_err(io)?;
        Ok(out)
    }

    /// A new blob of `owner`'s holding `parts` (`owner`'s blobs) one after another.
    pub async fn concat_blobs(
        &self,
        owner: &str,
        parts: &[String],
        max_bytes: u64,
        pending: impl Into<Pending<'_>>,
    ) -> Result<Blob, StoreError> {
        let mut out = self
            .blob_writer(owner, max_bytes)
            .await?
            .pending_on(pending);
        let mut chunk = vec![0; COPY_CHUNK];
        for id in parts {
            let Some((_, mut file)) = self.open_blob(owner, id).await? else {
                return Err(StoreError::NotFound {
                    collection: "blobs".into(),
                    id: id.clone(),
                });
            };
            loop {
                let n = file.read(&mut chunk).await.map_err(io)?;
                if n == 0 {
                    break;
                }
                out.write(&chunk[..n]).await?;
            }
        }
        out.finish().await
    }

    /// Removes `owner`'s blob `id`; false if there was none.
    pub async fn delete_blob(&self, owner: &str, id: &str) -> Result<bool, StoreError> {
        if !ids::is_store_id(id) {
            return Ok(false);
        }
        let q = self.sql("DELETE FROM blobs WHERE id = ? AND owner = ?");
        let n = sqlx::query(q.clone())
            .bind(id)
            .bind(owner)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        // Unindexed first, removed second: a crash in between leaves a file nobody can reach.
        match tokio::fs::remove_file(self.blobs.path(id)?).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(io(e)),
        }
    }
}

impl BlobWriter {
    /// Marks the blob as pending (see [`Pending`]).
    pub fn pending_on<'a>(mut self, on: impl Into<Pending<'a>>) -> Self {
        self.job = match on.into() {
            Pending::Nothing => None,
            Pending::Step { job, holder } => Some((job.to_owned(), holder.to_owned())),
            Pending::Request(id) => Some((format!("{REQUEST_PENDING}{id}"), id.to_owned())),
        };
        self
    }

    /// Appends one chunk; past the size limit the blob is refused (and removed when dropped).
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), StoreError> {
        let Some(file) = self.file.as_mut() else {
            return Err(io(std::io::Error::other("the blob was already finished")));
        };
        let total = self.written.saturating_add(chunk.len() as u64);
        if total > self.max_bytes {
            return Err(StoreError::TooLarge {
                limit: self.max_bytes,
            });
        }
        file.write_all(chunk).await.map_err(io)?;
        self.md5.update(chunk);
        self.written = total;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.written
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    /// Syncs the content, gives it a fresh id and indexes it: from here on it is whole.
    pub async fn finish(mut self) -> Result<Blob, StoreError> {
        let Some(file) = self.file.take() else {
            return Err(io(std::io::Error::other("the blob was already finished")));
        };
        file.sync_all().await.map_err(io)?;
        drop(file);
        let id = ids::new_id("blob-");
        let path = self.store.blobs.path(&id)?;
        if let Err(e) = tokio::fs::rename(&self.tmp, &path).await {
            let _ = tokio::fs::remove_file(&self.tmp).await;
            return Err(io(e));
        }
        // The rename itself is durable once the folder is synced.
        File::open(&self.store.blobs.dir)
            .await
            .map_err(io)?
            .sync_all()
            .await
            .map_err(io)?;
        let md5 = self.md5.clone().finalize();
        let blob = Blob {
            id,
            bytes: self.written,
            md5: md5.iter().map(|b| format!("{b:02x}")).collect(),
            created_at: crate::now(),
        };
        let q = self
            .store
            .sql("INSERT INTO blobs (id, owner, bytes, md5, created_at, job, job_holder) VALUES (?, ?, ?, ?, ?, ?, ?)");
        let indexed = sqlx::query(q.clone())
            .bind(&blob.id)
            .bind(&self.owner)
            .bind(i64::try_from(blob.bytes).unwrap_or(i64::MAX))
            .bind(&blob.md5)
            .bind(blob.created_at)
            .bind(self.job.as_ref().map(|(j, _)| j.clone()))
            .bind(self.job.as_ref().map(|(_, h)| h.clone()))
            .execute(&self.store.pool)
            .await;
        if let Err(e) = indexed {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(e.into());
        }
        Ok(blob)
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            // Not finished: the partial content goes (a crash leaves it to the next start).
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
