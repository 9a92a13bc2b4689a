//! Links to blobs on both databases: served by token until they expire, never for another's
//! blob, a request's pending blob kept by its link, and the sweep taking link and blob away.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use cinder_store::{Pending, StoreError};
use support::Place;

cases!(links_serve_their_blob_until_they_expire_and_then_go_with_it);

async fn links_serve_their_blob_until_they_expire_and_then_go_with_it(place: Place) {
    let store = place.open().await;
    let now = cinder_store::now();
    let mut w = store
        .blob_writer("alice", 100)
        .await
        .unwrap()
        .pending_on(Pending::Request("req_img"));
    w.write(b"\x89PNG...").await.unwrap();
    let blob = w.finish().await.unwrap().id;

    let e = store
        .share_blob("bob", &blob, "image/png", now + 60)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound { .. }), "{e:?}");
    let e = store
        .share_blob("alice", &blob, "image/png\r\nx: y", now + 60)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::BadLink(_)), "{e:?}");

    let token = store
        .share_blob("alice", &blob, "image/png", now + 60)
        .await
        .unwrap();
    assert!(token.starts_with("link-") && token.len() > 40, "{token}");
    let shared = store.shared_blob(&token).await.unwrap().expect("served");
    assert_eq!(shared.content_type, "image/png");
    assert_eq!(shared.blob.id, blob);
    assert_eq!(shared.expires_at, now + 60);
    for wrong in ["link-nope", "../etc/passwd", "", &blob] {
        assert!(store.shared_blob(wrong).await.unwrap().is_none(), "{wrong}");
    }
    // The link keeps the blob its request left pending.
    assert_eq!(store.sweep_request_blobs(now + 3600).await.unwrap(), 0);
    assert!(store.blob("alice", &blob).await.unwrap().is_some());

    // An expired link serves nothing, and the sweep removes it with its blob.
    let old = {
        let mut w = store.blob_writer("alice", 100).await.unwrap();
        w.write(b"old").await.unwrap();
        w.finish().await.unwrap().id
    };
    let expired = store
        .share_blob("alice", &old, "image/webp", now - 1)
        .await
        .unwrap();
    assert!(store.shared_blob(&expired).await.unwrap().is_none());
    assert_eq!(store.sweep_links(now).await.unwrap(), 1);
    assert!(store.blob("alice", &old).await.unwrap().is_none());
    assert!(
        store.shared_blob(&token).await.unwrap().is_some(),
        "the live link stays"
    );
    assert_eq!(store.sweep_links(now + 61).await.unwrap(), 1);
    assert!(store.shared_blob(&token).await.unwrap().is_none());
    assert!(store.blob("alice", &blob).await.unwrap().is_none());
}
