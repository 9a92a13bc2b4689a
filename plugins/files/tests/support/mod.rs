//! What the files plugin's test files share.

use cinder_sdk::host::Store;
use cinder_sdk::store::{Change, Updated};
use cinder_sdk::testing::FakeHost;
use serde_json::{Value, json};

/// Moves the stored object's `expires_at` (in its body) to long ago.
pub fn backdate(h: &FakeHost, collection: &str, id: &str) {
    let o = h.get_object(collection, id).unwrap().unwrap();
    let mut body: Value = serde_json::from_str(&o.body).unwrap();
    body["expires_at"] = json!(1);
    let change = Change {
        status: o.status,
        metadata: o.metadata,
        body: body.to_string(),
        expect_version: None,
    };
    assert!(matches!(
        h.update_object(collection, id, &change).unwrap(),
        Updated::Done(_)
    ));
}
