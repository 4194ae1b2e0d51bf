//! The one durable store (DESIGN.md decision 3): an ordered key-value space per namespace,
//! written in batches that commit together, on SQLite in WAL mode.
//!
//! The interface is deliberately narrow (put, delete, delete a prefix, scan a namespace) so a
//! Postgres backend can carry it later. Each service owns the namespaces it names
//! (`sqs.queue`, `sqs.body`, ...); only a service's `state.rs` uses them.
//!
//! Durability and group commit: [`Store::commit`] queues a batch, and whichever caller finds
//! the connection free becomes the leader: it commits everything queued so far in one
//! transaction, answers every waiter, and repeats until the queue is empty. So a lone client
//! pays no thread hand-off, and concurrent clients share transactions. A batch's future
//! resolves only after its transaction committed: with WAL and `synchronous=NORMAL` the
//! commit is in the WAL file when the call returns, so an acknowledged write survives
//! `kill -9`; only an operating-system crash can lose the last commits (`SyncMode::Full`
//! closes that too). Checkpoints (copying the WAL into the database, with fsyncs) run on a
//! background thread with its own connection, off the commit path.
//! Not here: queries over values, reads on the hot path (services keep their working set in
//! memory and load it with [`Store::scan`] at start).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

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
    #[error("the store has stopped")]
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

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

type Rows = Vec<(Vec<u8>, Vec<u8>)>;
type Ack = oneshot::Sender<Result<(), String>>;

struct Shared {
    conn: Mutex<Connection>,
    pending: Mutex<VecDeque<(Batch, Ack)>>,
    /// Dropped with the store, which ends the checkpointer.
    _checkpoints: Option<mpsc::Sender<()>>,
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE kv (
        ns TEXT NOT NULL,
        key BLOB NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (ns, key)
    ) WITHOUT ROWID",
    // Values move out of the key's b-tree. In a WITHOUT ROWID table a row is its own index
    // entry, so a value over about 1 KB spilled into overflow pages that every binary search
    // through its leaf read back to compare the key (SQLite assembles the whole record), and
    // random keys (ARNs, message ids) scattered each write over a random leaf of large rows.
    // Now the index holds only (ns, key, rowid), and rows go in rowid order: a commit's new
    // rows share the table's last pages, which stay in the cache.
    "CREATE TABLE kv_rows (
        id INTEGER PRIMARY KEY,
        ns TEXT NOT NULL,
        key BLOB NOT NULL,
        value BLOB NOT NULL
    );
    INSERT INTO kv_rows (ns, key, value) SELECT ns, key, value FROM kv ORDER BY ns, key;
    DROP TABLE kv;
    ALTER TABLE kv_rows RENAME TO kv;
    CREATE UNIQUE INDEX kv_key ON kv (ns, key);",
];

/// Most batches one transaction takes, so one commit's latency stays bounded under load.
const MAX_BATCHES_PER_COMMIT: usize = 4096;
/// WAL pages after which a commit checkpoints on the writer (64 MB of 4 KiB pages).
const WAL_RESTART_PAGES: i64 = 16 * 1024;
/// How often the checkpointer copies the WAL into the database. Asking SQLite how long the
/// WAL is after every commit cost 7% of a SendMessage, so the checkpointer keeps its own time.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves SQLite's own state consistent (the transaction
    // rolls back when its guard drops), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, or an in-memory store when `dir` is None.
    pub fn open(dir: Option<&Path>, sync: SyncMode) -> Result<Store, StoreError> {
        let (conn, path) = match dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                let path = dir.join("tsumiki.db");
                (Connection::open(&path)?, Some(path))
            }
            // Not `:memory:`: SQLite's in-memory pager keeps every page in its page cache and
            // scans that cache's whole hash table at each commit (pcache1TruncateUnsafe), so a
            // commit cost grew with the data (65% of a Step Functions execution's CPU at 80 MB).
            // The memdb VFS holds the file in memory behind an ordinary, bounded cache.
            None => (
                Connection::open_with_flags(
                    // Without a leading `/` the file is this connection's alone.
                    "file:tsumiki?vfs=memdb",
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                        | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
                        | rusqlite::OpenFlags::SQLITE_OPEN_URI
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?,
                None,
            ),
        };
        if dir.is_none() {
            // memdb caps a database at 1 GiB unless told otherwise; an in-memory server is
            // bounded by the machine's memory, as `:memory:` was.
            let mut limit: i64 = 1 << 40;
            conn.file_control(Some("main"), rusqlite::FileControl::SizeLimit(&mut limit))?;
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let level = if sync == SyncMode::Full {
            "FULL"
        } else {
            "NORMAL"
        };
        conn.pragma_update(None, "synchronous", level)?;
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        migrate(&conn)?;
        let mut checkpoints = None;
        if let Some(path) = &path {
            // The checkpointer's own connection checkpoints, off the commit path. Under
            // continuous writes its PASSIVE checkpoints never catch up with the last frame, so
            // the WAL never restarts and grew without bound (240 MB after 6,000 Step Functions
            // executions, every frame a fresh page of the page cache). A commit that finds the
            // WAL past 64 MB checkpoints on the writer, which no write can overtake, and the
            // next transaction starts the WAL over. At 4 MB (SQLite's default) that cost the
            // commit path a p99 of 15-22 ms against 6-9 ms; at 64 MB, none measurable.
            conn.pragma_update(None, "wal_autocheckpoint", WAL_RESTART_PAGES)?;
            let checkpointer = Connection::open(path)?;
            checkpointer.busy_timeout(Duration::from_secs(5))?;
            let (tx, rx) = mpsc::channel();
            thread::Builder::new()
                .name("tsumiki-checkpoint".into())
                .spawn(move || checkpoint_loop(checkpointer, rx))?;
            checkpoints = Some(tx);
        }
        let shared = Shared {
            conn: Mutex::new(conn),
            pending: Mutex::new(VecDeque::new()),
            _checkpoints: checkpoints,
        };
        Ok(Store {
            shared: Arc::new(shared),
        })
    }

    /// Queues `batch` for the next group commit and resolves once it is durable.
    ///
    /// Batches commit in the order `commit` was called, so a caller that calls it while holding
    /// its own lock gets its writes ordered as its state changes were. Awaiting the future may
    /// run the commit (for its batch and any queued with it) on the awaiting thread.
    pub fn commit(
        &self,
        batch: Batch,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let queued = !batch.is_empty();
        if queued {
            lock(&self.shared.pending).push_back((batch, tx));
        } else {
            let _ = tx.send(Ok(()));
        }
        let store = self.clone();
        async move {
            if queued {
                // Let requests that are ready at the same moment queue their batches first,
                // so one transaction carries them all (on a one-thread runtime this is the
                // only way commits group).
                tokio::task::yield_now().await;
                store.lead();
            }
            match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(msg)) => Err(StoreError::Failed(msg)),
                Err(_) => Err(StoreError::Closed),
            }
        }
    }

    /// Commits queued batches until none are left, unless another caller is doing so.
    fn lead(&self) {
        loop {
            let Ok(mut conn) = self.shared.conn.try_lock() else {
                // The leader re-checks the queue after it lets go, so this batch is not
                // stranded.
                return;
            };
            loop {
                let jobs: Vec<(Batch, Ack)> = {
                    let mut pending = lock(&self.shared.pending);
                    let n = pending.len().min(MAX_BATCHES_PER_COMMIT);
                    pending.drain(..n).collect()
                };
                if jobs.is_empty() {
                    break;
                }
                let result = apply(&mut conn, &jobs).map_err(|e| e.to_string());
                if let Err(e) = &result {
                    tracing::error!(error = %e, "The store failed to commit a batch.");
                }
                for (_, ack) in jobs {
                    let _ = ack.send(result.clone());
                }
            }
            drop(conn);
            if lock(&self.shared.pending).is_empty() {
                return;
            }
        }
    }

    /// Every (key, value) of `ns` in key order, as committed.
    pub async fn scan(&self, ns: &'static str) -> Result<Rows, StoreError> {
        self.flush().await?;
        let conn = lock(&self.shared.conn);
        Ok(scan(&conn, ns)?)
    }

    /// Every (key, value) of `ns` whose key starts with `prefix`, in key order, as committed.
    pub async fn scan_prefix(&self, ns: &'static str, prefix: &[u8]) -> Result<Rows, StoreError> {
        self.flush().await?;
        let conn = lock(&self.shared.conn);
        let rows = match prefix_upper_bound(prefix) {
            Some(upper) => {
                let mut stmt = conn.prepare_cached(
                    "SELECT key, value FROM kv WHERE ns = ?1 AND key >= ?2 AND key < ?3 ORDER BY key",
                )?;
                stmt.query_map(params![ns, prefix, upper], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Rows>>()?
            }
            None => {
                let mut stmt = conn.prepare_cached(
                    "SELECT key, value FROM kv WHERE ns = ?1 AND key >= ?2 ORDER BY key",
                )?;
                stmt.query_map(params![ns, prefix], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Rows>>()?
            }
        };
        Ok(rows)
    }

    /// The value of one key, as committed; for records too large to keep in memory (code
    /// packages), which their owner reads on demand.
    pub async fn get(&self, ns: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.flush().await?;
        let conn = lock(&self.shared.conn);
        let mut stmt = conn.prepare_cached("SELECT value FROM kv WHERE ns = ?1 AND key = ?2")?;
        let mut rows = stmt.query(params![ns, key])?;
        Ok(match rows.next()? {
            Some(row) => Some(row.get(0)?),
            None => None,
        })
    }

    /// Waits until everything queued so far has committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        // A write to a namespace nobody reads gives the leader something to commit.
        batch.delete("tsumiki.flush", Vec::new());
        self.commit(batch).await
    }
}

/// Checkpoints every [`CHECKPOINT_EVERY`], so the WAL stays short and its fsyncs stay off the
/// commit path. Ends when the store is dropped.
fn checkpoint_loop(conn: Connection, wake: mpsc::Receiver<()>) {
    loop {
        match wake.recv_timeout(CHECKPOINT_EVERY) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "A WAL checkpoint failed.");
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let done: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if done > 0 && (done as usize) < MIGRATIONS.len() {
        // Migrations copy rows (about 90 MB/s here): a large store starts seconds later, once.
        tracing::info!(
            from = done,
            to = MIGRATIONS.len(),
            "Migrating the store to its current layout; this runs once."
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        // One transaction with its version number, so a crash mid-migration leaves the
        // store as it was before it.
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))?;
    }
    Ok(())
}

fn apply(conn: &mut Connection, jobs: &[(Batch, Ack)]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut put =
            tx.prepare_cached("INSERT OR REPLACE INTO kv (ns, key, value) VALUES (?1, ?2, ?3)")?;
        let mut del = tx.prepare_cached("DELETE FROM kv WHERE ns = ?1 AND key = ?2")?;
        for (batch, _) in jobs {
            for write in &batch.writes {
                match write {
                    Write::Put { ns, key, value } => {
                        put.execute(params![ns, key, value])?;
                    }
                    Write::Delete { ns, key } => {
                        del.execute(params![ns, key])?;
                    }
                    Write::DeletePrefix { ns, prefix } => delete_prefix(&tx, ns, prefix)?,
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

fn scan(conn: &Connection, ns: &str) -> rusqlite::Result<Rows> {
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
        assert_eq!(
            store.get("t.a", b"k1").await.expect("get"),
            Some(b"v1".to_vec())
        );
        assert_eq!(store.get("t.a", b"k3").await.expect("get"), None);
        let mut b = Batch::new();
        b.delete("t.a", b"k1".to_vec());
        store.commit(b).await.expect("commit");
        assert_eq!(
            store.scan("t.a").await.expect("scan"),
            vec![(b"k2".to_vec(), b"v2".to_vec())]
        );
        assert_eq!(store.scan("t.b").await.expect("scan").len(), 1);
    }

    #[test]
    fn an_in_memory_store_is_not_capped_at_memdbs_default_gib() {
        let store = Store::open(None, SyncMode::Normal).expect("open");
        let conn = lock(&store.shared.conn);
        // -1 asks for the current limit without changing it.
        let mut limit: i64 = -1;
        conn.file_control(Some("main"), rusqlite::FileControl::SizeLimit(&mut limit))
            .expect("memdb answers SIZE_LIMIT");
        assert_eq!(limit, 1 << 40);
    }

    #[tokio::test]
    async fn delete_prefix_spares_neighbours() {
        let store = Store::open(None, SyncMode::Normal).expect("open");
        let mut b = Batch::new();
        for k in [&b"q1/a"[..], b"q1/b", b"q10/a", b"q2/a", b"q1\xff"] {
            b.put("t", k.to_vec(), b"x".to_vec());
        }
        store.commit(b).await.expect("commit");
        let scanned: Vec<_> = store
            .scan_prefix("t", b"q1/")
            .await
            .expect("scan_prefix")
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(scanned, vec![b"q1/a".to_vec(), b"q1/b".to_vec()]);
        let mut b = Batch::new();
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
    async fn a_store_of_the_first_schema_keeps_its_rows() {
        let dir = std::env::temp_dir().join(format!("tsumiki-store-v1-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        {
            let conn = Connection::open(dir.join("tsumiki.db")).expect("open");
            conn.execute_batch(MIGRATIONS[0]).expect("v1 schema");
            conn.pragma_update(None, "user_version", 1)
                .expect("version");
            for (k, v) in [("b", "2"), ("a", "1"), ("c", "3")] {
                conn.execute(
                    "INSERT INTO kv (ns, key, value) VALUES ('t', ?1, ?2)",
                    params![k.as_bytes(), v.as_bytes()],
                )
                .expect("row");
            }
        }
        let store = Store::open(Some(&dir), SyncMode::Normal).expect("migrate");
        let rows = store.scan("t").await.expect("scan");
        assert_eq!(
            rows,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"2".to_vec()),
                (b"c".to_vec(), b"3".to_vec())
            ]
        );
        // Keys stay unique: a put over an existing key replaces it.
        let mut b = Batch::new();
        b.put("t", b"a".to_vec(), b"one".to_vec());
        store.commit(b).await.expect("commit");
        assert_eq!(
            store.get("t", b"a").await.expect("get"),
            Some(b"one".to_vec())
        );
        assert_eq!(store.scan("t").await.expect("scan").len(), 3);
        let version: i64 = lock(&store.shared.conn)
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(version, MIGRATIONS.len() as i64);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
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
