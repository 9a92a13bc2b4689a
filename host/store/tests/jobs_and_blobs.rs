//! Jobs and blobs on both databases: leases taken once and taken up again, cancels, final
//! states; blobs whole or absent, per owner, joined, swept after a crash.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use cinder_store::{Change, JobState, Key, NewJob, NewObject, Pending, Renewal, StoreError};
use support::Place;

cases!(
    jobs_are_taken_once_and_taken_up_again_when_a_lease_runs_out,
    a_job_queued_for_later_is_not_taken_before_its_time,
    blobs_are_whole_or_absent_and_their_owners,
    a_steps_blobs_are_kept_with_its_progress_or_discarded,
    a_requests_blobs_are_kept_by_its_objects_or_swept,
);

/// A blob of alice's with `text`, pending on `job` when given.
async fn pending_blob<'a>(
    store: &cinder_store::Store,
    text: &str,
    job: impl Into<Pending<'a>>,
) -> String {
    let mut w = store
        .blob_writer("alice", 100)
        .await
        .unwrap()
        .pending_on(job);
    w.write(text.as_bytes()).await.unwrap();
    w.finish().await.unwrap().id
}

async fn a_steps_blobs_are_kept_with_its_progress_or_discarded(place: Place) {
    let store = place.open().await;
    let now = 1_800_000_000;
    store
        .enqueue(NewJob {
            id: "batch_p".into(),
            kind: "batch".into(),
            owner: "alice".into(),
            progress: "0".into(),
            now,
            not_before: None,
        })
        .await
        .unwrap();
    store
        .take_job(&["batch"], "p1", now, 30)
        .await
        .unwrap()
        .unwrap();
    let plain = pending_blob(&store, "not a step's", None).await;
    let saved = pending_blob(&store, "step 1", Some(("batch_p", "p1"))).await;
    assert!(matches!(
        store
            .commit_step("batch_p", "p1", "1", now, 30)
            .await
            .unwrap(),
        Renewal::Held { .. }
    ));
    // Step 2 writes a blob and a join, then the process dies before saving its progress.
    let lost = pending_blob(&store, "step 2", Some(("batch_p", "p1"))).await;
    let joined = store
        .concat_blobs(
            "alice",
            &[saved.clone(), lost.clone()],
            100,
            Some(("batch_p", "p1")),
        )
        .await
        .unwrap();
    // Another process takes the job up and removes what step 2 left, nothing else.
    let again = store
        .take_job(&["batch"], "p2", now + 60, 30)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.progress, "1");
    assert_eq!(store.discard_pending_blobs("batch_p").await.unwrap(), 2);
    for gone in [&lost, &joined.id] {
        assert!(store.blob("alice", gone).await.unwrap().is_none());
    }
    for kept in [&plain, &saved] {
        assert!(store.blob("alice", kept).await.unwrap().is_some());
    }
    // A commit by a process that lost the lease keeps nothing.
    let late = pending_blob(&store, "late", Some(("batch_p", "p1"))).await;
    assert_eq!(
        store
            .commit_step("batch_p", "p1", "2", now + 60, 30)
            .await
            .unwrap(),
        Renewal::Lost
    );
    // The last step's blobs are kept with the end of the job.
    let last = pending_blob(&store, "last", Some(("batch_p", "p2"))).await;
    assert!(
        store
            .finish_job("batch_p", "p2", JobState::Succeeded, None, now + 61)
            .await
            .unwrap()
    );
    assert!(store.blob("alice", &last).await.unwrap().is_some());
    // What the process that lost the lease wrote stays pending, for whoever holds the job.
    assert_eq!(store.discard_pending_blobs("batch_p").await.unwrap(), 1);
    assert!(store.blob("alice", &late).await.unwrap().is_none());
    assert!(store.blob("alice", &last).await.unwrap().is_some());
}

async fn a_requests_blobs_are_kept_by_its_objects_or_swept(place: Place) {
    let store = place.open().await;
    let file = |body: &str, keeps: Option<&str>| NewObject {
        collection: "files".into(),
        owner: "alice".into(),
        id_prefix: "file-".into(),
        created_at: 1,
        body: body.into(),
        keeps: keeps.map(str::to_owned),
        ..NewObject::default()
    };
    // Uploaded and recorded by its request: kept.
    let recorded = pending_blob(&store, "recorded", Pending::Request("req_a")).await;
    store.create(file(&recorded, Some("req_a"))).await.unwrap();
    // Recorded by an update of the request that wrote it (an upload's part): kept.
    let part = pending_blob(&store, "part", Pending::Request("req_b")).await;
    let upload = store.create(file("upload", None)).await.unwrap();
    let key = Key {
        collection: "files",
        owner: "alice",
        id: &upload.id,
    };
    let change = Change {
        status: None,
        metadata: Default::default(),
        body: part.clone(),
        expect_version: None,
        keeps: Some("req_b".into()),
    };
    store.update(key, change).await.unwrap();
    // Its request died (or failed) before recording an object; another request's object
    // does not keep it.
    let orphan = pending_blob(&store, "orphan", Pending::Request("req_c")).await;
    let joined = store
        .concat_blobs(
            "alice",
            std::slice::from_ref(&recorded),
            100,
            Pending::Request("req_c"),
        )
        .await
        .unwrap()
        .id;
    store.create(file("other", Some("req_d"))).await.unwrap();
    // A job step's pending blob and a plain one are not a request's to sweep.
    let step = pending_blob(&store, "step", Some(("batch_x", "p1"))).await;
    let plain = pending_blob(&store, "plain", None).await;
    // Requests still running (finished at or after the cut) keep their blobs.
    let now = cinder_store::now();
    assert_eq!(store.sweep_request_blobs(now - 60).await.unwrap(), 0);
    assert_eq!(store.sweep_request_blobs(now + 60).await.unwrap(), 2);
    for gone in [&orphan, &joined] {
        assert!(store.blob("alice", gone).await.unwrap().is_none());
    }
    for kept in [&recorded, &part, &step, &plain] {
        assert!(store.blob("alice", kept).await.unwrap().is_some());
    }
    assert_eq!(store.sweep_request_blobs(now + 60).await.unwrap(), 0);
}

async fn jobs_are_taken_once_and_taken_up_again_when_a_lease_runs_out(place: Place) {
    let store = place.open().await;
    let now = 1_800_000_000;
    for id in ["batch_a", "batch_b"] {
        store
            .enqueue(NewJob {
                id: id.into(),
                kind: "batch".into(),
                owner: "alice".into(),
                progress: "{}".into(),
                now,
                not_before: None,
            })
            .await
            .unwrap();
    }
    let dup = NewJob {
        id: "batch_a".into(),
        kind: "batch".into(),
        ..NewJob::default()
    };
    assert!(matches!(
        store.enqueue(dup).await,
        Err(StoreError::Duplicate(_))
    ));
    assert!(
        store
            .take_job(&["video"], "p1", now, 30)
            .await
            .unwrap()
            .is_none()
    );
    let a = store
        .take_job(&["batch"], "p1", now, 30)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (a.id.as_str(), a.state, a.attempts),
        ("batch_a", JobState::Running, 1)
    );
    let b = store
        .take_job(&["video", "batch"], "p2", now, 30)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.id, "batch_b");
    assert!(
        store
            .take_job(&["batch"], "p3", now + 5, 30)
            .await
            .unwrap()
            .is_none()
    );
    // p1 renews and saves progress; p2 dies (stops renewing).
    assert_eq!(
        store
            .renew_job("batch_a", "p1", r#"{"done":3}"#, now + 20, 30)
            .await
            .unwrap(),
        Renewal::Held {
            cancel_requested: false
        }
    );
    let again = store
        .take_job(&["batch"], "p3", now + 31, 30)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.id.as_str(), again.attempts), ("batch_b", 2));
    // The dead holder, should it wake up, writes nothing more.
    assert_eq!(
        store
            .renew_job("batch_b", "p2", "{}", now + 32, 30)
            .await
            .unwrap(),
        Renewal::Lost
    );
    assert!(
        !store
            .finish_job("batch_b", "p2", JobState::Succeeded, None, now + 32)
            .await
            .unwrap()
    );
    // A cancel reaches the holder at its next renewal; a finished job is never taken again.
    assert!(store.cancel_job("batch_a", now + 33).await.unwrap());
    assert_eq!(
        store
            .renew_job("batch_a", "p1", r#"{"done":4}"#, now + 34, 30)
            .await
            .unwrap(),
        Renewal::Held {
            cancel_requested: true
        }
    );
    assert!(
        store
            .finish_job("batch_a", "p1", JobState::Cancelled, None, now + 35)
            .await
            .unwrap()
    );
    assert!(
        store
            .finish_job(
                "batch_b",
                "p3",
                JobState::Failed,
                Some("interrupted"),
                now + 36
            )
            .await
            .unwrap()
    );
    assert!(!store.cancel_job("batch_a", now + 37).await.unwrap());
    assert!(matches!(
        store
            .finish_job("batch_c", "p1", JobState::Running, None, now)
            .await,
        Err(StoreError::NotFinal("running"))
    ));
    assert!(
        store
            .take_job(&["batch"], "p4", now + 1000, 30)
            .await
            .unwrap()
            .is_none()
    );
    let a = store.job("batch_a").await.unwrap().unwrap();
    assert_eq!(
        (a.state, a.progress.as_str()),
        (JobState::Cancelled, r#"{"done":4}"#)
    );
    let b = store.job("batch_b").await.unwrap().unwrap();
    assert_eq!(
        (b.state, b.error.as_deref()),
        (JobState::Failed, Some("interrupted"))
    );
    // Two processes racing for one job: exactly one gets it.
    store
        .enqueue(NewJob {
            id: "batch_c".into(),
            kind: "batch".into(),
            owner: "alice".into(),
            progress: "{}".into(),
            now,
            not_before: None,
        })
        .await
        .unwrap();
    let other = place.open().await;
    let (x, y) = tokio::join!(
        store.take_job(&["batch"], "p5", now + 2000, 30),
        other.take_job(&["batch"], "p6", now + 2000, 30)
    );
    assert_eq!(
        [x.unwrap(), y.unwrap()]
            .iter()
            .filter(|j| j.is_some())
            .count(),
        1
    );
}

fn temporaries(place: &Place) -> usize {
    std::fs::read_dir(place.dir.join("blobs/tmp"))
        .unwrap()
        .count()
}

async fn blobs_are_whole_or_absent_and_their_owners(place: Place) {
    let store = place.open().await;
    let mut w = store.blob_writer("alice", 100).await.unwrap();
    w.write(b"hel").await.unwrap();
    w.write(b"lo").await.unwrap();
    assert_eq!(temporaries(&place), 1);
    let hello = w.finish().await.unwrap();
    assert_eq!(temporaries(&place), 0);
    assert_eq!(
        (hello.bytes, hello.md5.as_str()),
        (5, "5d41402abc4b2a76b9719d911017c592")
    );
    assert!(hello.id.starts_with("blob-"));
    assert_eq!(
        store.blob("alice", &hello.id).await.unwrap(),
        Some(hello.clone())
    );
    assert_eq!(
        store.read_blob("alice", &hello.id, 1, 3).await.unwrap(),
        b"ell"
    );
    assert_eq!(
        store.read_blob("alice", &hello.id, 3, 100).await.unwrap(),
        b"lo"
    );
    assert!(
        store
            .read_blob("alice", &hello.id, 9, 4)
            .await
            .unwrap()
            .is_empty()
    );
    // Another owner's blob is not there for them.
    assert!(store.blob("bob", &hello.id).await.unwrap().is_none());
    assert!(matches!(
        store.read_blob("bob", &hello.id, 0, 5).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(!store.delete_blob("bob", &hello.id).await.unwrap());
    // Too large: refused, and the dropped writer leaves nothing behind.
    let mut big = store.blob_writer("alice", 4).await.unwrap();
    assert!(matches!(
        big.write(b"12345").await,
        Err(StoreError::TooLarge { limit: 4 })
    ));
    drop(big);
    let unfinished = {
        let mut w = store.blob_writer("alice", 10).await.unwrap();
        w.write(b"half").await.unwrap();
        w
    };
    drop(unfinished);
    assert_eq!(temporaries(&place), 0);
    // Joined in order, from the owner's blobs only.
    let mut w = store.blob_writer("alice", 100).await.unwrap();
    w.write(b", world").await.unwrap();
    let world = w.finish().await.unwrap();
    let joined = store
        .concat_blobs("alice", &[hello.id.clone(), world.id.clone()], 100, None)
        .await
        .unwrap();
    assert_eq!(
        store.read_blob("alice", &joined.id, 0, 100).await.unwrap(),
        b"hello, world"
    );
    assert!(matches!(
        store
            .concat_blobs("alice", &[hello.id.clone(), world.id.clone()], 6, None)
            .await,
        Err(StoreError::TooLarge { limit: 6 })
    ));
    assert!(matches!(
        store
            .concat_blobs("bob", std::slice::from_ref(&hello.id), 100, None)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    // Ids that are not the store's never reach the file system.
    for bad in ["../cinder.db", "a/b", "", "blob-\0"] {
        assert!(store.blob("alice", bad).await.unwrap().is_none());
        assert!(!store.delete_blob("alice", bad).await.unwrap());
    }
    assert!(store.delete_blob("alice", &hello.id).await.unwrap());
    assert!(store.blob("alice", &hello.id).await.unwrap().is_none());
    assert!(!place.dir.join("blobs").join(&hello.id).exists());
    // A second replica on the same database and folder reads what the first wrote.
    let other = place.open().await;
    assert_eq!(
        other.read_blob("alice", &world.id, 0, 100).await.unwrap(),
        b", world"
    );
}

async fn a_job_queued_for_later_is_not_taken_before_its_time(place: Place) {
    let store = place.open().await;
    let now = 1_800_000_000;
    let job = |id: &str, not_before| NewJob {
        id: id.into(),
        kind: "expire".into(),
        owner: "alice".into(),
        progress: "{}".into(),
        now,
        not_before,
    };
    // Queued first but due last: the due one is taken, the other waits for its time.
    store
        .enqueue(job("expire-late", Some(now + 3600)))
        .await
        .unwrap();
    store.enqueue(job("expire-now", None)).await.unwrap();
    let stored = store.job("expire-late").await.unwrap().unwrap();
    assert_eq!(stored.not_before, Some(now + 3600));
    let first = store.take_job(&["expire"], "p1", now, 30).await.unwrap();
    assert_eq!(first.unwrap().id, "expire-now");
    assert!(
        store
            .finish_job("expire-now", "p1", JobState::Succeeded, None, now)
            .await
            .unwrap()
    );
    assert!(
        store
            .take_job(&["expire"], "p1", now + 3599, 30)
            .await
            .unwrap()
            .is_none()
    );
    let due = store
        .take_job(&["expire"], "p1", now + 3600, 30)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((due.id.as_str(), due.attempts), ("expire-late", 1));
    // Its lease runs out like any job's: taken up again, without waiting for anything else.
    let again = store
        .take_job(&["expire"], "p2", now + 3700, 30)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.id.as_str(), again.attempts), ("expire-late", 2));
}
