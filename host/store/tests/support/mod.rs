//! The harness every store test file shares: a case is an async fn of a [`Place`], and the
//! whole list runs against SQLite (a fresh folder per case) and against a throwaway PostgreSQL
//! cluster (a fresh database per case): one code path, two databases.
#![allow(dead_code)]

pub mod pg;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use cinder_store::Store;

/// Where a case's store lives: open it again (a restart, or a second replica) with `open`.
#[derive(Clone)]
pub struct Place {
    pub dir: PathBuf,
    pub url: Option<String>,
}

impl Place {
    pub async fn open(&self) -> Store {
        Store::open(&self.dir, self.url.as_deref()).await.unwrap()
    }
}

pub type Case = fn(Place) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// The named async fns as cases, and the two tests that run them all: on SQLite and on
/// PostgreSQL.
#[macro_export]
macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        const CASES: &[(&str, support::Case)] = &[$((stringify!($name), |p| Box::pin($name(p)))),*];

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn every_case_on_sqlite() {
            support::on_sqlite(CASES).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn every_case_on_postgres() {
            support::on_postgres(CASES).await;
        }
    };
}

/// Every case on SQLite, each in a fresh folder.
pub async fn on_sqlite(cases: &[(&str, Case)]) {
    for (name, case) in cases {
        let dir = std::env::temp_dir().join(cinder_store::new_id("cinder-store-test-"));
        eprintln!("sqlite: {name}");
        case(Place {
            dir: dir.clone(),
            url: None,
        })
        .await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Every case on one throwaway PostgreSQL cluster, each in a fresh database.
pub async fn on_postgres(cases: &[(&str, Case)]) {
    let cluster = pg::Cluster::start();
    for (n, (name, case)) in cases.iter().enumerate() {
        eprintln!("postgres: {name}");
        let url = cluster.database(&format!("case_{n}")).await;
        let dir = cluster.dir().join(format!("blobs_{n}"));
        case(Place {
            dir,
            url: Some(url),
        })
        .await;
    }
}
