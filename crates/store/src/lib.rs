//! The one durable store (DESIGN.md decision 3): an ordered key-value space per namespace,
//! written in batches that commit together, on SQLite in WAL mode.
//!
//! The interface is deliberately narrow (put, delete, delete a prefix, scan a namespace) so a
//! Postgres backend can carry it later. Each service owns the namespaces it names
//! (`sqs.queues`, `sqs.messages`, ...); only a service's `state.rs` uses them.
//!
//! Durability: one writer thread owns the connection and commits every batch queued since its
//! last commit in one transaction (group commit). [`Store::commit`] resolves only after that
//! transaction committed, so an acknowledged write survives `kill -9`: with WAL and
//! `synchronous=NORMAL` a committed transaction is in the WAL file before the call returns; only
//! an operating-system crash can lose the last transactions (`--sync full` closes that too).
//! Not here: queries over values, cross-namespace joins, reads on the hot path (services keep
//! their working set in memory and load it with [`Store::scan`] at start).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use rusqlite::{Connection, params};
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("the store failed: {0}")]
    Failed(String),
    #[error("the store's writer thread has stopped")]
    Closed,
}

/// How hard a commit pushes data to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// Survives a process crash (`kill -9`); an OS crash may lose the last commits.
    #[default]
    Normal,
    /// Survives an OS crash too: fsync on every group commit.
    Full,
}

/// One write in a [`Batch`].
#[derive(Debug, Clone)]
enum Write {
    Put {
        ns: &'static str,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        ns: &'static str,
        key: Vec<u8>,
    },
    DeletePrefix {
        ns: &'static str,
        prefix: Vec<u8>,
    },
    DeleteAll,
}

/// Writes that commit together or not at all.
#[derive(Debug, Default, Clone)]
pub struct Batch {
    writes: Vec<Write>,
}

impl Batch {
    pub fn new() -> Self {
        Batch::default()
    }

    pub fn put(&mut self, ns: &'static str, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.writes.push(Write::Put {
            ns,
            key: key.into(),
            value: value.into(),
        });
    }

    pub fn delete(&mut self, ns: &'static str, key: impl Into<Vec<u8>>) {
        self.writes.push(Write::Delete {
            ns,
            key: key.into(),
        });
    }

    /// Deletes every key of `ns` starting with `prefix`.
    pub fn delete_prefix(&mut self, ns: &'static str, prefix: impl Into<Vec<u8>>) {
        self.writes.push(Write::DeletePrefix {
            ns,
            prefix: prefix.into(),
        });
    }

    /// Deletes everything in every namespace.
    pub fn delete_all(&mut self) {
        self.writes.push(Write::DeleteAll);
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.writes.len()
    }

    pub fn append(&mut self, other: Batch) {
        self.writes.extend(other.writes);
    }
}

type Rows = Vec<(Vec<u8>, Vec<u8>)>;
type Ack = oneshot::Sender<Result<(), String>>;

enum Job {
    Commit(Batch, Option<Ack>),
    Scan(&'static str, oneshot::Sender<Result<Rows, String>>),
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
    path: Option<PathBuf>,
}

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &["CREATE TABLE kv (
        ns TEXT NOT NULL,
        key BLOB NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (ns, key)
    )"];

/// Most batches one group commit takes, so one commit's latency stays bounded under load.
const MAX_JOBS_PER_COMMIT: usize = 4096;

impl Store {
    /// Opens (creating if needed) the store in `dir`, or an in-memory store when `dir` is None.
    pub fn open(dir: Option<&Path>, sync: SyncMode) -> Result<Store, StoreError> {
        let (conn, path) = match dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                let path = dir.join("tsumiki.db");
                (Connection::open(&path)?, Some(path))
            }
            None => (Connection::open_in_memory()?, None),
        };
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(
            None,
            "synchronous",
            if sync == SyncMode::Full {
                "FULL"
            } else {
                "NORMAL"
            },
        )?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&conn)?;
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("tsumiki-store".into())
            .spawn(move || writer(conn, rx))?;
        Ok(Store { jobs: tx, path })
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Queues `batch` for the next group commit and resolves once it is durable.
    ///
    /// Batches commit in the order `commit` was called, so a caller that calls it while holding
    /// its own lock gets its writes ordered as its state changes were.
    pub fn commit(
        &self,
        batch: Batch,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let sent = if batch.is_empty() {
            let _ = tx.send(Ok(()));
            true
        } else {
            self.jobs.send(Job::Commit(batch, Some(tx))).is_ok()
        };
        async move {
            if !sent {
                return Err(StoreError::Closed);
            }
            match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(msg)) => Err(StoreError::Failed(msg)),
                Err(_) => Err(StoreError::Closed),
            }
        }
    }

    /// Every (key, value) of `ns` in key order, as committed.
    pub async fn scan(&self, ns: &'static str) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Job::Scan(ns, tx))
            .map_err(|_| StoreError::Closed)?;
        match rx.await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(msg)) => Err(StoreError::Failed(msg)),
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// Waits until everything queued so far has committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        // A write to a namespace nobody reads gives the writer something to commit.
        batch.delete("tsumiki.flush", Vec::new());
        self.commit(batch).await
    }
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let done: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        conn.execute_batch(sql)?;
        conn.pragma_update(None, "user_version", (i + 1) as i64)?;
    }
    Ok(())
}

fn writer(mut conn: Connection, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut pending = vec![first];
        while pending.len() < MAX_JOBS_PER_COMMIT {
            match jobs.try_recv() {
                Ok(job) => pending.push(job),
                Err(_) => break,
            }
        }
        let mut commits = Vec::new();
        let mut scans = Vec::new();
        for job in pending {
            match job {
                Job::Commit(batch, ack) => commits.push((batch, ack)),
                Job::Scan(ns, ack) => scans.push((ns, ack)),
            }
        }
        if !commits.is_empty() {
            let result = apply(&mut conn, &commits).map_err(|e| e.to_string());
            if let Err(e) = &result {
                tracing::error!(error = %e, "The store failed to commit a batch.");
            }
            for (_, ack) in commits {
                if let Some(ack) = ack {
                    let _ = ack.send(result.clone());
                }
            }
        }
        // Scans run after the commits queued before them, so they see those writes.
        for (ns, ack) in scans {
            let _ = ack.send(scan(&conn, ns).map_err(|e| e.to_string()));
        }
    }
}

fn apply(conn: &mut Connection, commits: &[(Batch, Option<Ack>)]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut put =
            tx.prepare_cached("INSERT OR REPLACE INTO kv (ns, key, value) VALUES (?1, ?2, ?3)")?;
        let mut del = tx.prepare_cached("DELETE FROM kv WHERE ns = ?1 AND key = ?2")?;
        for (batch, _) in commits {
            for write in &batch.writes {
                match write {
                    Write::Put { ns, key, value } => {
                        put.execute(params![ns, key, value])?;
                    }
                    Write::Delete { ns, key } => {
                        del.execute(params![ns, key])?;
                    }
                    Write::DeletePrefix { ns, prefix } => delete_prefix(&tx, ns, prefix)?,
                    Write::DeleteAll => {
                        tx.execute("DELETE FROM kv", [])?;
                    }
                }
            }
        }
    }
    tx.commit()
}

fn delete_prefix(tx: &rusqlite::Transaction<'_>, ns: &str, prefix: &[u8]) -> rusqlite::Result<()> {
    match prefix_upper_bound(prefix) {
        Some(upper) => tx.execute(
            "DELETE FROM kv WHERE ns = ?1 AND key >= ?2 AND key < ?3",
            params![ns, prefix, upper],
        )?,
        None => tx.execute(
            "DELETE FROM kv WHERE ns = ?1 AND key >= ?2",
            params![ns, prefix],
        )?,
    };
    Ok(())
}

/// The smallest key greater than every key starting with `prefix`, if one exists.
fn prefix_upper_bound(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < 0xff {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}

fn scan(conn: &Connection, ns: &str) -> rusqlite::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut stmt = conn.prepare_cached("SELECT key, value FROM kv WHERE ns = ?1 ORDER BY key")?;
    let rows = stmt.query_map(params![ns], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_delete_scan_in_memory() {
        let store = Store::open(None, SyncMode::Normal).expect("open");
        let mut b = Batch::new();
        b.put("t.a", b"k1".to_vec(), b"v1".to_vec());
        b.put("t.a", b"k2".to_vec(), b"v2".to_vec());
        b.put("t.b", b"k1".to_vec(), b"other".to_vec());
        store.commit(b).await.expect("commit");
        let mut b = Batch::new();
        b.delete("t.a", b"k1".to_vec());
        store.commit(b).await.expect("commit");
        assert_eq!(
            store.scan("t.a").await.expect("scan"),
            vec![(b"k2".to_vec(), b"v2".to_vec())]
        );
        assert_eq!(store.scan("t.b").await.expect("scan").len(), 1);
    }

    #[tokio::test]
    async fn delete_prefix_spares_neighbours() {
        let store = Store::open(None, SyncMode::Normal).expect("open");
        let mut b = Batch::new();
        for k in [&b"q1/a"[..], b"q1/b", b"q10/a", b"q2/a", b"q1\xff"] {
            b.put("t", k.to_vec(), b"x".to_vec());
        }
        b.delete_prefix("t", b"q1/".to_vec());
        store.commit(b).await.expect("commit");
        let keys: Vec<_> = store
            .scan("t")
            .await
            .expect("scan")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            keys,
            vec![b"q10/a".to_vec(), b"q1\xff".to_vec(), b"q2/a".to_vec()]
        );
        assert_eq!(prefix_upper_bound(b"\xff\xff"), None);
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = std::env::temp_dir().join(format!("tsumiki-store-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let store = Store::open(Some(&dir), SyncMode::Normal).expect("open");
            let mut b = Batch::new();
            b.put("t", b"k".to_vec(), b"v".to_vec());
            store.commit(b).await.expect("commit");
        }
        let store = Store::open(Some(&dir), SyncMode::Normal).expect("reopen");
        assert_eq!(
            store.scan("t").await.expect("scan"),
            vec![(b"k".to_vec(), b"v".to_vec())]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
