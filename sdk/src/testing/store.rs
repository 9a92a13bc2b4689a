//! The store and the multipart form, faked in memory: objects listed in creation order with
//! the real store's cursors, filters and compare-and-set; blobs as byte vectors with their
//! MD5; a form as scripted parts. A [`FakeStore`] is shared by clones, so several requests'
//! hosts can see one store.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use md5::{Digest, Md5};

use super::FakeHost;
use crate::host::{BlobWriter, Multipart, Store};
use crate::store::{Blob, Change, NewObject, Object, Order, Page, Query, Updated};
use crate::types::ErrorDetail;
use crate::{Error, multipart};

#[derive(Default)]
struct Inner {
    /// (collection, object) in creation order.
    objects: Vec<(String, Object)>,
    blobs: BTreeMap<String, Vec<u8>>,
    next: u64,
    max_blob: Option<u64>,
    /// The blob a request answered with, and its content type.
    sent: Option<(String, String)>,
    /// Links made (`share-blob`): blob, content type, expiry.
    links: Vec<(String, String, u64)>,
    /// Vector entries: ((space, index), entry) in first-write order.
    pub(super) vectors: Vec<((String, String), crate::vectors::Entry)>,
}

/// Objects and blobs in memory; clones share them.
#[derive(Clone, Default)]
pub struct FakeStore(Rc<RefCell<Inner>>);

impl FakeStore {
    /// Runs `f` on the vector entries (the fake `vectors` import's state).
    pub(super) fn with_vectors<T>(
        &self,
        f: impl FnOnce(&mut Vec<((String, String), crate::vectors::Entry)>) -> T,
    ) -> T {
        f(&mut self.0.borrow_mut().vectors)
    }

    /// Blobs past `bytes` are refused, as the host's `[limits] max_file_bytes` does.
    pub fn with_max_blob_bytes(self, bytes: u64) -> Self {
        self.0.borrow_mut().max_blob = Some(bytes);
        self
    }

    /// The content of blob `id`.
    pub fn blob(&self, id: &str) -> Option<Vec<u8>> {
        self.0.borrow().blobs.get(id).cloned()
    }

    /// How many blobs there are (what a failed request must leave unchanged).
    pub fn blob_count(&self) -> usize {
        self.0.borrow().blobs.len()
    }

    /// The objects of `collection`, oldest first.
    pub fn objects(&self, collection: &str) -> Vec<Object> {
        let inner = self.0.borrow();
        inner
            .objects
            .iter()
            .filter(|(c, _)| c == collection)
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// The blob the last request answered with (`send_blob`), and its content type.
    pub fn sent_blob(&self) -> Option<(String, String)> {
        self.0.borrow().sent.clone()
    }

    /// The links made to blobs (`share-blob`): blob id, content type, expiry.
    pub fn links(&self) -> Vec<(String, String, u64)> {
        self.0.borrow().links.clone()
    }

    fn id(&self, prefix: &str) -> String {
        let mut inner = self.0.borrow_mut();
        inner.next += 1;
        format!("{prefix}{:024}", inner.next)
    }

    fn keep_blob(&self, bytes: Vec<u8>) -> Result<Blob, Error> {
        if let Some(max) = self.0.borrow().max_blob
            && bytes.len() as u64 > max
        {
            return Err(too_large(max));
        }
        let id = self.id("blob-");
        let md5: String = Md5::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let blob = Blob {
            id: id.clone(),
            bytes: bytes.len() as u64,
            md5,
        };
        self.0.borrow_mut().blobs.insert(id, bytes);
        Ok(blob)
    }
}

fn too_large(max: u64) -> Error {
    Error::InvalidRequest(ErrorDetail {
        message: format!("a blob is at most {max} bytes"),
        param: Some("chunk".into()),
        code: None,
    })
}

fn invalid(message: String, param: &str) -> Error {
    Error::InvalidRequest(ErrorDetail {
        message,
        param: Some(param.into()),
        code: None,
    })
}

/// A blob being written in memory; dropped unfinished, it leaves nothing.
struct FakeWriter {
    store: FakeStore,
    bytes: Vec<u8>,
}

impl BlobWriter for FakeWriter {
    fn write(&mut self, chunk: &[u8]) -> Result<(), Error> {
        if let Some(max) = self.store.0.borrow().max_blob
            && (self.bytes.len() + chunk.len()) as u64 > max
        {
            return Err(too_large(max));
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Blob, Error> {
        let FakeWriter { store, bytes } = *self;
        store.keep_blob(bytes)
    }
}

impl FakeHost {
    /// Keeps `content` as a file named `filename` (purpose `assistants`), as the files plugin
    /// would: its id.
    pub fn add_file(&self, filename: &str, content: &[u8]) -> String {
        let added = (|| {
            let mut w = self.blob_writer()?;
            w.write(content)?;
            let blob = w.finish()?;
            crate::files::save(self, None, filename, "assistants", &blob, None)
        })();
        match added {
            Ok(file) => file["id"].as_str().unwrap_or_default().to_owned(),
            Err(e) => panic!("the fake store could not keep {filename}: {e:?}"),
        }
    }
}

impl Store for FakeHost {
    fn create_object(&self, collection: &str, new: &NewObject) -> Result<Object, Error> {
        let object = Object {
            id: self.store.id(&new.id_prefix),
            created_at: crate::unix_time() as i64,
            version: 1,
            status: new.status.clone(),
            metadata: new.metadata.clone(),
            body: new.body.clone(),
        };
        let mut inner = self.store.0.borrow_mut();
        inner.objects.push((collection.to_owned(), object.clone()));
        Ok(object)
    }

    fn put_object(&self, collection: &str, id: &str, new: &NewObject) -> Result<Object, Error> {
        let mut inner = self.store.0.borrow_mut();
        if let Some((_, o)) = inner
            .objects
            .iter_mut()
            .find(|(c, o)| c == collection && o.id == id)
        {
            o.version += 1;
            o.status = new.status.clone();
            o.metadata = new.metadata.clone();
            o.body = new.body.clone();
            return Ok(o.clone());
        }
        let object = Object {
            id: id.to_owned(),
            created_at: crate::unix_time() as i64,
            version: 1,
            status: new.status.clone(),
            metadata: new.metadata.clone(),
            body: new.body.clone(),
        };
        inner.objects.push((collection.to_owned(), object.clone()));
        Ok(object)
    }

    fn get_object(&self, collection: &str, id: &str) -> Result<Option<Object>, Error> {
        let inner = self.store.0.borrow();
        Ok(inner
            .objects
            .iter()
            .find(|(c, o)| c == collection && o.id == id)
            .map(|(_, o)| o.clone()))
    }

    fn update_object(&self, collection: &str, id: &str, change: &Change) -> Result<Updated, Error> {
        let mut inner = self.store.0.borrow_mut();
        let Some((_, o)) = inner
            .objects
            .iter_mut()
            .find(|(c, o)| c == collection && o.id == id)
        else {
            return Ok(Updated::NotFound);
        };
        if let Some(v) = change.expect_version
            && v != o.version
        {
            return Ok(Updated::Conflict(o.version));
        }
        o.version += 1;
        o.status = change.status.clone();
        o.metadata = change.metadata.clone();
        o.body = change.body.clone();
        Ok(Updated::Done(o.clone()))
    }

    fn delete_object(&self, collection: &str, id: &str) -> Result<bool, Error> {
        let mut inner = self.store.0.borrow_mut();
        let before = inner.objects.len();
        inner
            .objects
            .retain(|(c, o)| !(c == collection && o.id == id));
        Ok(inner.objects.len() < before)
    }

    fn list_objects(&self, collection: &str, query: &Query) -> Result<Page, Error> {
        let mut all: Vec<Object> = self.store.objects(collection);
        if query.order == Order::Desc {
            all.reverse();
        }
        let position = |id: &str, param: &str| {
            all.iter()
                .position(|o| o.id == id)
                .ok_or_else(|| invalid(format!("no object `{id}` to list from"), param))
        };
        let start = match &query.after {
            Some(a) => position(a, "after")? + 1,
            None => 0,
        };
        let end = match &query.before {
            Some(b) => position(b, "before")?,
            None => all.len(),
        };
        let keep = |o: &Object| {
            query
                .status
                .as_ref()
                .is_none_or(|s| o.status.as_ref() == Some(s))
                && query
                    .metadata
                    .iter()
                    .all(|pair| o.metadata.iter().any(|m| m == pair))
        };
        let mut matching: Vec<Object> = all
            .get(start..end.max(start))
            .unwrap_or_default()
            .iter()
            .filter(|o| keep(o))
            .cloned()
            .collect();
        let backwards = query.before.is_some() && query.after.is_none();
        if backwards {
            matching.reverse();
        }
        let has_more = matching.len() > query.limit as usize;
        matching.truncate(query.limit as usize);
        if backwards {
            matching.reverse();
        }
        Ok(Page {
            objects: matching,
            has_more,
        })
    }

    fn blob_writer(&self) -> Result<Box<dyn BlobWriter>, Error> {
        Ok(Box::new(FakeWriter {
            store: self.store.clone(),
            bytes: Vec::new(),
        }))
    }

    fn blob_info(&self, id: &str) -> Result<Option<Blob>, Error> {
        Ok(self.store.blob(id).map(|bytes| Blob {
            id: id.to_owned(),
            bytes: bytes.len() as u64,
            md5: Md5::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        }))
    }

    fn read_blob(&self, id: &str, offset: u64, len: u32) -> Result<Vec<u8>, Error> {
        let bytes = self
            .store
            .blob(id)
            .ok_or_else(|| invalid(format!("no blob `{id}`"), "id"))?;
        let start = (offset as usize).min(bytes.len());
        let end = start.saturating_add(len as usize).min(bytes.len());
        Ok(bytes[start..end].to_vec())
    }

    fn concat_blobs(&self, parts: &[String]) -> Result<Blob, Error> {
        let mut all = Vec::new();
        for id in parts {
            let bytes = self
                .store
                .blob(id)
                .ok_or_else(|| invalid(format!("no blob `{id}`"), "parts"))?;
            all.extend_from_slice(&bytes);
        }
        self.store.keep_blob(all)
    }

    fn delete_blob(&self, id: &str) -> Result<bool, Error> {
        Ok(self.store.0.borrow_mut().blobs.remove(id).is_some())
    }

    fn send_blob(&self, id: &str, content_type: &str) -> Result<(), Error> {
        if self.store.blob(id).is_none() {
            return Err(invalid(format!("no blob `{id}`"), "id"));
        }
        self.store.0.borrow_mut().sent = Some((id.to_owned(), content_type.to_owned()));
        Ok(())
    }

    fn share_blob(&self, id: &str, content_type: &str, expires_at: u64) -> Result<String, Error> {
        if self.store.blob(id).is_none() {
            return Err(invalid(format!("no blob `{id}`"), "id"));
        }
        let now = crate::unix_time();
        if expires_at <= now || expires_at - now > 7 * 86_400 {
            return Err(invalid("a link expires within 7 days".into(), "expires-at"));
        }
        self.store
            .0
            .borrow_mut()
            .links
            .push((id.to_owned(), content_type.to_owned(), expires_at));
        Ok(format!("http://fake.test/links/{id}"))
    }
}

/// A scripted multipart form: parts in order, each read in chunks.
#[derive(Default)]
pub struct FakeForm {
    parts: RefCell<VecDeque<(multipart::Part, Vec<u8>)>>,
    /// What is left of the current part.
    current: RefCell<Vec<u8>>,
}

impl FakeForm {
    /// A form of `(name, filename, content)` parts.
    pub fn new(parts: &[(&str, Option<&str>, &[u8])]) -> Self {
        FakeForm {
            parts: RefCell::new(
                parts
                    .iter()
                    .map(|(name, filename, content)| {
                        let part = multipart::Part {
                            name: (*name).to_owned(),
                            filename: filename.map(str::to_owned),
                            content_type: None,
                        };
                        (part, content.to_vec())
                    })
                    .collect(),
            ),
            current: RefCell::new(Vec::new()),
        }
    }
}

impl Multipart for FakeHost {
    fn next_part(&self) -> Result<Option<multipart::Part>, Error> {
        let next = self.form.parts.borrow_mut().pop_front();
        Ok(next.map(|(part, content)| {
            *self.form.current.borrow_mut() = content;
            part
        }))
    }

    fn read_part(&self, max: u32) -> Result<Vec<u8>, Error> {
        let mut current = self.form.current.borrow_mut();
        let n = current.len().min(max as usize);
        Ok(current.drain(..n).collect())
    }
}
