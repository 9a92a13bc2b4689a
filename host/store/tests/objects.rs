//! Objects on both databases: ownership, paging both ways with filters, compare-and-set,
//! create-or-replace, concurrent creates from two pools, restarts, client text as data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;

use cinder_store::{Change, Key, ListQuery, NewObject, Order, StoreError};
use support::Place;

cases!(
    objects_round_trip_within_their_owner,
    listing_pages_both_ways_with_filters,
    compare_and_set_refuses_a_stale_version,
    put_replaces_in_place,
    concurrent_creates_all_land_in_order,
    a_restart_and_a_second_replica_see_the_same_state,
    client_text_is_data_not_sql,
);

fn new(collection: &str, owner: &str, body: &str) -> NewObject {
    NewObject {
        collection: collection.into(),
        owner: owner.into(),
        id_prefix: "obj-".into(),
        created_at: 1_700_000_000,
        body: body.into(),
        ..NewObject::default()
    }
}

fn query(collection: &str, owner: &str, limit: u32) -> ListQuery {
    ListQuery {
        collection: collection.into(),
        owner: owner.into(),
        limit,
        ..ListQuery::default()
    }
}

fn ids(page: &cinder_store::Page) -> Vec<&str> {
    page.objects.iter().map(|o| o.id.as_str()).collect()
}

async fn objects_round_trip_within_their_owner(place: Place) {
    let store = place.open().await;
    let made = store
        .create(new("files", "alice", r#"{"a":1}"#))
        .await
        .unwrap();
    assert!(made.id.starts_with("obj-") && made.version == 1);
    let key = Key {
        collection: "files",
        owner: "alice",
        id: &made.id,
    };
    assert_eq!(store.get(key).await.unwrap().unwrap(), made);
    // Another owner, or another collection, sees nothing and can change nothing.
    let bob = Key {
        owner: "bob",
        ..key
    };
    let elsewhere = Key {
        collection: "batches",
        ..key
    };
    assert!(store.get(bob).await.unwrap().is_none());
    assert!(store.get(elsewhere).await.unwrap().is_none());
    assert!(!store.delete(bob).await.unwrap());
    let change = Change {
        status: Some("processed".into()),
        metadata: BTreeMap::from([("k".into(), "v".into())]),
        body: r#"{"a":2}"#.into(),
        expect_version: None,
        keeps: None,
    };
    assert!(matches!(
        store.update(bob, change.clone()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(
        store
            .list(&query("files", "bob", 10))
            .await
            .unwrap()
            .objects
            .is_empty()
    );
    let changed = store.update(key, change).await.unwrap();
    assert_eq!(
        (
            changed.version,
            changed.status.as_deref(),
            changed.body.as_str()
        ),
        (2, Some("processed"), r#"{"a":2}"#)
    );
    assert_eq!(changed.created_at, made.created_at);
    assert!(store.delete(key).await.unwrap());
    assert!(!store.delete(key).await.unwrap());
    assert!(store.get(key).await.unwrap().is_none());
}

async fn listing_pages_both_ways_with_filters(place: Place) {
    let store = place.open().await;
    let mut made = Vec::new();
    for i in 0..7 {
        let mut o = new("files", "alice", &format!("{{\"i\":{i}}}"));
        o.status = Some(if i % 2 == 0 { "even" } else { "odd" }.into());
        o.metadata = BTreeMap::from([
            (
                "parity".into(),
                if i % 2 == 0 { "even" } else { "odd" }.into(),
            ),
            ("third".into(), (i % 3).to_string()),
        ]);
        made.push(store.create(o).await.unwrap().id);
        // Someone else's objects in between never show.
        store.create(new("files", "bob", "{}")).await.unwrap();
    }
    let newest_first: Vec<&str> = made.iter().rev().map(String::as_str).collect();
    let page = store.list(&query("files", "alice", 3)).await.unwrap();
    assert_eq!(
        (ids(&page), page.has_more),
        (newest_first[..3].to_vec(), true)
    );
    let mut q = query("files", "alice", 3);
    q.after = Some(made[4].clone());
    let page = store.list(&q).await.unwrap();
    assert_eq!(
        (ids(&page), page.has_more),
        (newest_first[3..6].to_vec(), true)
    );
    q.after = Some(made[1].clone());
    let page = store.list(&q).await.unwrap();
    assert_eq!((ids(&page), page.has_more), (vec![made[0].as_str()], false));
    // Oldest first, before a cursor, and both bounds at once.
    let mut q = query("files", "alice", 100);
    q.order = Order::Asc;
    let all: Vec<&str> = made.iter().map(String::as_str).collect();
    assert_eq!(ids(&store.list(&q).await.unwrap()), all);
    q.before = Some(made[3].clone());
    assert_eq!(ids(&store.list(&q).await.unwrap()), all[..3].to_vec());
    q.limit = 2;
    let page = store.list(&q).await.unwrap();
    assert_eq!((ids(&page), page.has_more), (all[1..3].to_vec(), true));
    q.after = Some(made[0].clone());
    q.limit = 100;
    assert_eq!(ids(&store.list(&q).await.unwrap()), all[1..3].to_vec());
    let mut q = query("files", "alice", 2);
    q.before = Some(made[3].clone());
    assert_eq!(ids(&store.list(&q).await.unwrap()), vec![all[5], all[4]]);
    // Filters: status, metadata equality (all of them).
    let mut q = query("files", "alice", 100);
    q.status = Some("odd".into());
    assert_eq!(
        ids(&store.list(&q).await.unwrap()),
        vec![all[5], all[3], all[1]]
    );
    q.status = None;
    q.metadata = vec![
        ("parity".into(), "even".into()),
        ("third".into(), "0".into()),
    ];
    assert_eq!(ids(&store.list(&q).await.unwrap()), vec![all[6], all[0]]);
    q.metadata = vec![("parity".into(), "none".into())];
    assert!(store.list(&q).await.unwrap().objects.is_empty());
    // A cursor that is not one of this listing's objects (or is another owner's) is named.
    let mut q = query("files", "alice", 3);
    q.after = Some("obj-nope".into());
    assert!(matches!(
        store.list(&q).await,
        Err(StoreError::UnknownCursor(id)) if id == "obj-nope"
    ));
    let bobs = store.list(&query("files", "bob", 1)).await.unwrap();
    q.after = Some(bobs.objects[0].id.clone());
    assert!(matches!(
        store.list(&q).await,
        Err(StoreError::UnknownCursor(_))
    ));
    // limit 0 still says whether there is anything.
    let page = store.list(&query("files", "alice", 0)).await.unwrap();
    assert!(page.objects.is_empty() && page.has_more);
}

async fn compare_and_set_refuses_a_stale_version(place: Place) {
    let store = place.open().await;
    let made = store.create(new("batches", "alice", "{}")).await.unwrap();
    let key = Key {
        collection: "batches",
        owner: "alice",
        id: &made.id,
    };
    let change = |status: &str| Change {
        status: Some(status.into()),
        metadata: BTreeMap::new(),
        body: "{}".into(),
        expect_version: Some(1),
        keeps: None,
    };
    let first = store.update(key, change("in_progress")).await.unwrap();
    assert_eq!(first.version, 2);
    let stale = store.update(key, change("cancelling")).await;
    assert!(
        matches!(
            stale,
            Err(StoreError::Conflict {
                expected: 1,
                actual: 2,
                ..
            })
        ),
        "{stale:?}"
    );
    let now = store.get(key).await.unwrap().unwrap();
    assert_eq!(now.status.as_deref(), Some("in_progress"));
}

async fn put_replaces_in_place(place: Place) {
    let store = place.open().await;
    let mut first = new("chat", "alice", "one");
    first.metadata = BTreeMap::from([("a".into(), "1".into())]);
    store.put(first, "chatcmpl-1").await.unwrap();
    store
        .put(new("chat", "alice", "two"), "chatcmpl-2")
        .await
        .unwrap();
    let mut again = new("chat", "alice", "one, edited");
    again.created_at += 50;
    again.metadata = BTreeMap::from([("b".into(), "2".into())]);
    let replaced = store.put(again, "chatcmpl-1").await.unwrap();
    assert_eq!((replaced.version, replaced.created_at), (2, 1_700_000_000));
    let mut q = query("chat", "alice", 10);
    q.order = Order::Asc;
    let page = store.list(&q).await.unwrap();
    assert_eq!(ids(&page), vec!["chatcmpl-1", "chatcmpl-2"]);
    assert_eq!(page.objects[0].body, "one, edited");
    q.metadata = vec![("a".into(), "1".into())];
    assert!(store.list(&q).await.unwrap().objects.is_empty());
    q.metadata = vec![("b".into(), "2".into())];
    assert_eq!(ids(&store.list(&q).await.unwrap()), vec!["chatcmpl-1"]);
    // The same id under another owner is another object.
    store
        .put(new("chat", "bob", "bob's"), "chatcmpl-1")
        .await
        .unwrap();
    let alice = Key {
        collection: "chat",
        owner: "alice",
        id: "chatcmpl-1",
    };
    assert_eq!(store.get(alice).await.unwrap().unwrap().body, "one, edited");
}

async fn concurrent_creates_all_land_in_order(place: Place) {
    // Two pools on one database, as two replicas would be.
    let (a, b) = (place.open().await, place.open().await);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            store.create(new("files", "alice", "{}")).await.unwrap().id
        }));
    }
    let mut made = std::collections::HashSet::new();
    for t in tasks {
        made.insert(t.await.unwrap());
    }
    assert_eq!(made.len(), 100);
    let mut listed = Vec::new();
    let mut q = query("files", "alice", 7);
    loop {
        let page = a.list(&q).await.unwrap();
        listed.extend(page.objects.iter().map(|o| o.id.clone()));
        if !page.has_more {
            break;
        }
        q.after = listed.last().cloned();
    }
    assert_eq!(listed.len(), 100);
    assert_eq!(
        listed
            .iter()
            .cloned()
            .collect::<std::collections::HashSet<_>>(),
        made
    );
}

async fn a_restart_and_a_second_replica_see_the_same_state(place: Place) {
    let first = place.open().await;
    let made = first.create(new("files", "alice", "kept")).await.unwrap();
    // Opening again applies no migration twice and loses nothing.
    let second = place.open().await;
    let key = Key {
        collection: "files",
        owner: "alice",
        id: &made.id,
    };
    assert_eq!(second.get(key).await.unwrap().unwrap().body, "kept");
    assert!(second.delete(key).await.unwrap());
    assert!(first.get(key).await.unwrap().is_none());
    drop((first, second));
    let third = place.open().await;
    assert!(third.get(key).await.unwrap().is_none());
}

async fn client_text_is_data_not_sql(place: Place) {
    let store = place.open().await;
    let nasty = "x'); DROP TABLE objects; -- ? $1 \\0 é 🔥";
    let mut o = new("files", nasty, &"\"".repeat(100_000));
    o.status = Some(nasty.into());
    o.metadata = BTreeMap::from([(nasty.into(), nasty.into())]);
    let made = store.create(o).await.unwrap();
    let key = Key {
        collection: "files",
        owner: nasty,
        id: &made.id,
    };
    assert_eq!(store.get(key).await.unwrap().unwrap(), made);
    let mut q = query("files", nasty, 5);
    q.status = Some(nasty.into());
    q.metadata = vec![(nasty.into(), nasty.into())];
    assert_eq!(ids(&store.list(&q).await.unwrap()), vec![made.id.as_str()]);
    // NUL characters (which PostgreSQL cannot keep) are refused alike on both databases,
    // naming the field; looking one up finds nothing.
    let mut o = new("files", "alice", "{}");
    o.metadata = BTreeMap::from([("k".into(), "a\0b".into())]);
    assert!(matches!(
        store.create(o).await,
        Err(StoreError::NulCharacter("metadata"))
    ));
    assert!(matches!(
        store.create(new("files", "alice", "a\0")).await,
        Err(StoreError::NulCharacter("body"))
    ));
    let nul = Key {
        collection: "files",
        owner: "alice",
        id: "file-\0",
    };
    assert!(store.get(nul).await.unwrap().is_none());
    assert!(!store.delete(nul).await.unwrap());
    let mut q = query("files", "alice", 5);
    q.metadata = vec![("k".into(), "\0".into())];
    assert!(store.list(&q).await.unwrap().objects.is_empty());
    q.after = Some("\0".into());
    assert!(matches!(
        store.list(&q).await,
        Err(StoreError::UnknownCursor(_))
    ));
    assert!(
        store
            .list(&query("files", "alice", 100))
            .await
            .unwrap()
            .objects
            .is_empty()
    );
}
