use super::*;

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(cinder_store::new_id(&format!("cinder-docs-{name}-")))
}

fn keys(v: Vec<(String, String)>) -> Vec<String> {
    v.into_iter().map(|(k, _)| k).collect()
}

#[tokio::test]
async fn documents_are_per_plugin_and_per_owner() {
    let dir = temp("scope");
    let store = Store::open(&dir, None).await.unwrap();
    let me = Scope {
        store: &store,
        plugin: "p",
        owner: "me",
    };
    for k in ["a", "b", "c"] {
        me.put("col", k, format!("v{k}")).await.unwrap();
    }
    me.put("col", "a", "v2".into()).await.unwrap();
    assert!(me.delete("col", "b").await.unwrap());
    assert!(!me.delete("col", "zz").await.unwrap());
    let q = Scope { plugin: "q", ..me };
    assert_eq!(q.get("col", "a").await.unwrap(), None);
    assert_eq!(me.get("col", "a").await.unwrap().as_deref(), Some("v2"));
    assert_eq!(
        keys(me.page("col", None, 10, false).await.unwrap()),
        ["a", "c"]
    );
    assert_eq!(
        keys(me.page("col", None, 10, true).await.unwrap()),
        ["c", "a"]
    );
    assert_eq!(
        keys(me.page("col", Some("a".into()), 10, false).await.unwrap()),
        ["c"]
    );
    assert_eq!(keys(me.page("col", None, 1, false).await.unwrap()), ["a"]);
    assert!(me.put("Bad Name", "k", "v".into()).await.is_err());
    assert!(me.put("col", "", "v".into()).await.is_err());
    assert!(me.put("col", "k", "x".repeat(MAX_VALUE + 1)).await.is_err());
    // Another owner sees none of them and cannot page from them or delete them.
    let you = Scope { owner: "you", ..me };
    assert_eq!(you.get("col", "a").await.unwrap(), None);
    assert!(you.page("col", None, 10, false).await.unwrap().is_empty());
    assert!(
        you.page("col", Some("a".into()), 10, false)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!you.delete("col", "a").await.unwrap());
    std::fs::remove_dir_all(dir).unwrap();
}

/// Lines as the pre-store `DocumentStore` wrote them (`{"op":"put","key","value","owner"}`,
/// `{"op":"del","key"}`; lines before owners were recorded have none), and a last line cut
/// short by a crash.
const LEGACY_LOG: &str = concat!(
    "{\"op\":\"put\",\"key\":\"k0\",\"value\":\"ownerless\"}\n",
    "{\"op\":\"put\",\"key\":\"k1\",\"value\":\"one\",\"owner\":\"me\"}\n",
    "{\"op\":\"put\",\"key\":\"k2\",\"value\":\"two\",\"owner\":\"me\"}\n",
    "{\"op\":\"put\",\"key\":\"k3\",\"value\":\"three\",\"owner\":\"you\"}\n",
    "{\"op\":\"put\",\"key\":\"k1\",\"value\":\"one, again\",\"owner\":\"me\"}\n",
    "{\"op\":\"del\",\"key\":\"k2\"}\n",
    "{\"op\":\"put\",\"key\":\"k4\",\"value\":\"four\",\"owner\":\"me\"}\n",
    "{\"op\":\"put\",\"key\":\"k5\",\"val",
);

#[tokio::test]
async fn legacy_logs_move_into_the_store_once() {
    let dir = temp("migrate");
    std::fs::create_dir_all(dir.join("llm-chat")).unwrap();
    std::fs::write(dir.join("llm-chat/chat_completions.jsonl"), LEGACY_LOG).unwrap();
    // Not a log, or not a collection name: left alone.
    std::fs::write(dir.join("llm-chat/notes.txt"), "x").unwrap();
    std::fs::write(dir.join("llm-chat/Bad Name.jsonl"), "x").unwrap();
    let store = Store::open(&dir, None).await.unwrap();
    assert_eq!(migrate_logs(&dir, &store).await.unwrap(), 4);
    let me = Scope {
        store: &store,
        plugin: "llm-chat",
        owner: "me",
    };
    let page = me.page("chat_completions", None, 10, false).await.unwrap();
    assert_eq!(
        page,
        [
            ("k1".into(), "one, again".into()),
            ("k4".into(), "four".into())
        ]
    );
    let local = Scope {
        owner: LOCAL_OWNER,
        ..me
    };
    assert_eq!(
        local
            .get("chat_completions", "k0")
            .await
            .unwrap()
            .as_deref(),
        Some("ownerless")
    );
    let you = Scope { owner: "you", ..me };
    assert_eq!(
        you.get("chat_completions", "k3").await.unwrap().as_deref(),
        Some("three")
    );
    assert!(!dir.join("llm-chat/chat_completions.jsonl").exists());
    assert!(
        dir.join("llm-chat/chat_completions.jsonl.migrated")
            .exists()
    );
    assert!(dir.join("llm-chat/Bad Name.jsonl").exists());
    // Once only: a restart moves nothing, and documents written since stay.
    me.put("chat_completions", "k6", "six".into())
        .await
        .unwrap();
    let store = Store::open(&dir, None).await.unwrap();
    assert_eq!(migrate_logs(&dir, &store).await.unwrap(), 0);
    let me = Scope {
        store: &store,
        plugin: "llm-chat",
        owner: "me",
    };
    assert_eq!(
        keys(me.page("chat_completions", None, 10, false).await.unwrap()),
        ["k1", "k4", "k6"]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_migration_cut_short_is_finished_by_the_next_start() {
    let dir = temp("resume");
    std::fs::create_dir_all(dir.join("p")).unwrap();
    std::fs::write(dir.join("p/col.jsonl"), LEGACY_LOG).unwrap();
    let store = Store::open(&dir, None).await.unwrap();
    // As if the process died after moving some documents but before renaming the log.
    let me = Scope {
        store: &store,
        plugin: "p",
        owner: "me",
    };
    me.put("col", "k4", "four".into()).await.unwrap();
    assert_eq!(migrate_logs(&dir, &store).await.unwrap(), 4);
    // Moving again replaced in place: one copy of each.
    let page = me.page("col", None, 10, false).await.unwrap();
    assert_eq!(keys(page), ["k4", "k1"]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_claimed_log_is_moved_once_it_is_abandoned() {
    let dir = temp("claimed");
    std::fs::create_dir_all(dir.join("p")).unwrap();
    // Claimed by a start that died (or a replica moving it right now).
    let claimed = dir.join("p/col.jsonl.migrating");
    std::fs::write(&claimed, LEGACY_LOG).unwrap();
    let store = Store::open(&dir, None).await.unwrap();
    assert_eq!(
        migrate_logs(&dir, &store).await.unwrap(),
        0,
        "too fresh: maybe in progress"
    );
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&claimed)
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert_eq!(migrate_logs(&dir, &store).await.unwrap(), 4);
    assert!(dir.join("p/col.jsonl.migrated").exists());
    assert!(!claimed.exists());
    std::fs::remove_dir_all(dir).unwrap();
}
