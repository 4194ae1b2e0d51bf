//! Event source mappings for streams (Kinesis, DynamoDB Streams: `shard_source` knows each
//! one's wire shape), with AWS's semantics:
//!
//! - One poller per shard, in order. A shard without a checkpoint starts at the mapping's
//!   `StartingPosition` (TRIM_HORIZON, LATEST, AT_TIMESTAMP); one with a checkpoint continues
//!   after it.
//! - `ParallelizationFactor` N > 1: each read goes to N lanes by partition key, the lanes run
//!   at once, each in order, so a key's records keep their order; the checkpoint moves after
//!   every lane finished.
//! - `TumblingWindowInSeconds`: batches never span a window (windows aligned to the epoch by
//!   arrival time); the state the function returns goes into its next invocation of the
//!   window; once the window is over (or its state outgrew 1 MB, `isWindowTerminatedEarly`) a
//!   last invocation without records has `isFinalInvokeForWindow`. The state lives in memory,
//!   as a restart re-reads the window's records from the checkpoint.
//! - `FilterCriteria`: Kinesis records are matched on `data` decoded as JSON (records whose
//!   data is not JSON match no `data` pattern), DynamoDB records as they are; records no
//!   pattern matches are skipped and checkpointed, as AWS does.
//! - A batch is up to `BatchSize` records, gathered for up to `MaximumBatchingWindowInSeconds`,
//!   sent as AWS's Kinesis event.
//! - A failing batch blocks its shard and is retried (back-off on the clock, 1 s doubling up to
//!   1 minute) until `MaximumRetryAttempts` retries are spent (-1: until its records leave the
//!   stream's retention) or its oldest record is older than `MaximumRecordAgeInSeconds`. With
//!   `BisectBatchOnFunctionError` a failing batch is split in two and each half tried in order
//!   (the halves carry the batch's attempt count). With `ReportBatchItemFailures` the records
//!   before the lowest reported sequence number are done and the rest is retried.
//! - A batch that gives up sends its metadata (`KinesisBatchInfo` or `DDBStreamBatchInfo`,
//!   AWS's shapes) to the on-failure destination (an SQS queue or SNS topic) and the shard
//!   moves on.
//! - Checkpoints (`triggers.shard`, `uuid/shardId` -> last finished sequence number, or
//!   `end` for a shard read to its end, `skip` for one closed before a LATEST mapping) are
//!   durable before the next batch is read, so a restart never reprocesses a finished batch;
//!   the batch in flight at a crash runs again (AWS is at-least-once too).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock, Weak};

use base64::Engine;
use serde_json::{Value, json};
use tsumiki_core::{AwsError, Clock, RequestContext};
use tsumiki_lang::event_pattern::Pattern;
use tsumiki_ports::{EventSourcePollers, FunctionInvoker, MappingSpec, Service, Services};
use tsumiki_store::{Batch, Store};

use crate::deliver::{self, Destination};
use crate::shard_source::{Position, ShardInfo, ShardSource, StreamRecord};

const NS: &str = "triggers.shard";
/// How long an idle shard waits before asking for records again (AWS polls about once a second).
const IDLE_POLL: std::time::Duration = std::time::Duration::from_millis(200);
const BACKOFF_START_MS: i64 = 1_000;
const BACKOFF_MAX_MS: i64 = 60_000;

/// The pollers of every stream event source mapping.
pub struct ShardPollers {
    store: Store,
    clock: Arc<Clock>,
    invoker: Weak<dyn FunctionInvoker>,
    services: OnceLock<Services>,
    running: parking_lot::Mutex<HashMap<String, (MappingSpec, tokio::task::AbortHandle)>>,
    me: Weak<ShardPollers>,
}

impl ShardPollers {
    pub fn new(
        store: Store,
        clock: Arc<Clock>,
        invoker: Weak<dyn FunctionInvoker>,
    ) -> Arc<ShardPollers> {
        Arc::new_cyclic(|me| ShardPollers {
            store,
            clock,
            invoker,
            services: OnceLock::new(),
            running: parking_lot::Mutex::new(HashMap::new()),
            me: me.clone(),
        })
    }

    /// Gives the pollers the served services (the streams they poll, the SQS they report to).
    pub fn set_services(&self, services: Services) {
        let _ = self.services.set(services);
    }
}

/// Whether a mapping's source is a stream (Kinesis or DynamoDB Streams).
pub fn is_stream_source(arn: &str) -> bool {
    ShardSource::of_arn(arn).is_some()
}

impl EventSourcePollers for ShardPollers {
    fn configure(&self, spec: MappingSpec) {
        let mut running = self.running.lock();
        if let Some((old, handle)) = running.get(&spec.uuid) {
            if *old == spec {
                return;
            }
            handle.abort();
        }
        running.remove(&spec.uuid);
        if !spec.enabled || !is_stream_source(&spec.source_arn) {
            return;
        }
        let handle = tokio::spawn(run(self.me.clone(), spec.clone())).abort_handle();
        running.insert(spec.uuid.clone(), (spec, handle));
    }

    fn remove(&self, uuid: &str) {
        if let Some((_, handle)) = self.running.lock().remove(uuid) {
            handle.abort();
        }
        // A deleted mapping's checkpoints go with it.
        let mut batch = Batch::new();
        batch.delete_prefix(NS, format!("{uuid}/"));
        let commit = self.store.commit(batch);
        tokio::spawn(async move {
            if let Err(e) = commit.await {
                tracing::warn!(error = %e, "could not forget a mapping's checkpoints");
            }
        });
    }
}

/// What a shard's loop needs from its mapping.
#[derive(Clone)]
struct Shard {
    spec: MappingSpec,
    source: ShardSource,
    id: String,
    ctx: RequestContext,
}

fn context(arn: &str, source: ShardSource) -> Option<RequestContext> {
    let (_, region, account, _) = tsumiki_core::ids::parse_arn(arn)?;
    Some(RequestContext {
        account: account.to_string(),
        region: region.to_string(),
        request_id: String::new(),
        base_url: format!("https://{}.{region}.amazonaws.com", source.model()),
        access_key: None,
        path: "/".to_string(),
    })
}

/// The pieces a loop takes from the pollers on each turn (they hold the pollers weakly).
#[derive(Clone)]
struct Parts {
    stream: Arc<dyn Service>,
    services: Services,
    clock: Arc<Clock>,
    store: Store,
    invoker: Weak<dyn FunctionInvoker>,
}

async fn parts(pollers: &Weak<ShardPollers>, source: ShardSource) -> Option<Parts> {
    loop {
        let p = pollers.upgrade()?;
        if let Some(services) = p.services.get()
            && let Some(stream) = services.get(source.model())
        {
            return Some(Parts {
                stream: stream.clone(),
                services: services.clone(),
                clock: p.clock.clone(),
                store: p.store.clone(),
                invoker: p.invoker.clone(),
            });
        }
        drop(p);
        Clock::pause_real(IDLE_POLL).await;
    }
}

/// A shard's durable progress for one mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Progress {
    /// Nothing processed yet.
    Fresh,
    /// Every record up to this sequence number is done.
    After(String),
    /// Read to its end (a closed shard): its children may start.
    Ended,
    /// Closed before the mapping (at LATEST) looked at it: nothing of it is read, and its
    /// children start at the mapping's position too.
    Skipped,
}

const ENDED: &[u8] = b"end";
const SKIPPED: &[u8] = b"skip";

async fn progress(store: &Store, uuid: &str, shard: &str) -> Progress {
    match store.get(NS, format!("{uuid}/{shard}").as_bytes()).await {
        Ok(Some(v)) if v == ENDED => Progress::Ended,
        Ok(Some(v)) if v == SKIPPED => Progress::Skipped,
        Ok(Some(v)) => Progress::After(String::from_utf8_lossy(&v).to_string()),
        _ => Progress::Fresh,
    }
}

async fn save_progress(store: &Store, uuid: &str, shard: &str, value: &[u8]) {
    let mut batch = Batch::new();
    batch.put(NS, format!("{uuid}/{shard}"), value.to_vec());
    if let Err(e) = store.commit(batch).await {
        tracing::error!(mapping = %uuid, shard = %shard, error = %e, "could not save a checkpoint");
    }
}

/// How often a mapping lists its stream's shards to find children of resharding.
const RELIST: std::time::Duration = std::time::Duration::from_secs(1);

/// One mapping: lists the stream's shards and runs one loop per shard whose parents are read
/// to their end (AWS reads a child only after its parents, so a key's records stay in order
/// across resharding). Aborting this task drops the set, which aborts every shard loop.
async fn run(pollers: Weak<ShardPollers>, spec: MappingSpec) {
    let Some(source) = ShardSource::of_arn(&spec.source_arn) else {
        return;
    };
    let Some(ctx) = context(&spec.source_arn, source) else {
        return;
    };
    let mut set: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
    let mut active: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
    loop {
        let Some(p) = parts(&pollers, source).await else {
            return;
        };
        match source.shards(&*p.stream, &ctx, &spec.source_arn).await {
            Ok(shards) => {
                active.retain(|_, h| !h.is_finished());
                let listed: HashMap<&str, &ShardInfo> =
                    shards.iter().map(|s| (s.id.as_str(), s)).collect();
                for info in &shards {
                    if active.contains_key(&info.id) {
                        continue;
                    }
                    let start = match progress(&p.store, &spec.uuid, &info.id).await {
                        Progress::Ended | Progress::Skipped => continue,
                        Progress::After(seq) => Start::After(seq),
                        Progress::Fresh => {
                            // Parents no longer listed have left the stream's retention.
                            let mut ready = true;
                            let mut parent_read = false;
                            for parent in info
                                .parents
                                .iter()
                                .filter(|p| listed.contains_key(p.as_str()))
                            {
                                match progress(&p.store, &spec.uuid, parent).await {
                                    Progress::Ended => parent_read = true,
                                    Progress::Skipped => {}
                                    _ => ready = false,
                                }
                            }
                            if !ready {
                                continue;
                            }
                            match spec.starting_position.as_deref() {
                                Some("LATEST") if info.closed => {
                                    save_progress(&p.store, &spec.uuid, &info.id, SKIPPED).await;
                                    continue;
                                }
                                // The child of a shard this mapping read continues where the
                                // parent ended: at the child's first record.
                                Some("LATEST") if parent_read => Start::TrimHorizon,
                                Some("LATEST") => Start::Latest,
                                Some("AT_TIMESTAMP") => Start::AtTimestampMs(
                                    spec.starting_position_timestamp_ms.unwrap_or(0),
                                ),
                                _ => Start::TrimHorizon,
                            }
                        }
                    };
                    let shard = Shard {
                        spec: spec.clone(),
                        source,
                        id: info.id.clone(),
                        ctx: ctx.clone(),
                    };
                    let handle = set.spawn(shard_loop(pollers.clone(), shard, start));
                    active.insert(info.id.clone(), handle);
                }
            }
            Err(e) => {
                // A stream that does not exist (yet): AWS keeps the mapping; so do we.
                tracing::warn!(mapping = %spec.uuid, error = %e.message, "listing the stream's shards failed");
            }
        }
        drop(p);
        // A shard that ends lets its children start at once; otherwise look again shortly.
        tokio::select! {
            Some(_) = set.join_next(), if !set.is_empty() => {}
            () = Clock::pause_real(RELIST) => {}
        }
    }
}

/// Where a shard loop begins reading.
#[derive(Clone, Debug)]
enum Start {
    TrimHorizon,
    Latest,
    AtTimestampMs(i64),
    After(String),
}

impl Start {
    fn position(&self) -> Position<'_> {
        match self {
            Start::TrimHorizon => Position::TrimHorizon,
            Start::Latest => Position::Latest,
            Start::AtTimestampMs(ms) => Position::AtTimestampMs(*ms),
            Start::After(seq) => Position::After(seq),
        }
    }
}

/// One shard: read a batch, process it (with retries), checkpoint, repeat; returns once a
/// closed shard is read to its end.
async fn shard_loop(pollers: Weak<ShardPollers>, shard: Shard, start: Start) {
    // Where a new iterator starts: the first position, then after the last finished record.
    let mut start = start;
    let mut iter: Option<String> = None;
    let filters: Vec<Pattern> = shard
        .spec
        .filters
        .iter()
        .filter_map(|f| Pattern::parse(f).ok())
        .collect();
    let window_ms = i64::from(shard.spec.tumbling_window_s) * 1000;
    // Tumbling windows keep one state per shard, so they run one lane.
    let lanes = if window_ms > 0 {
        1
    } else {
        shard.spec.parallelization_factor.clamp(1, 10) as usize
    };
    let size = shard.spec.batch_size.max(1) as usize * lanes;
    // Records read but left for the next batch (a batch holds one tumbling window).
    let mut carry: Vec<StreamRecord> = Vec::new();
    let mut window: Option<Window> = None;
    let mut ended = false;
    loop {
        let Some(p) = parts(&pollers, shard.source).await else {
            return;
        };
        let mut batch: Vec<StreamRecord> = std::mem::take(&mut carry);
        let mut deadline = None;
        // A batch left over from the last read (the next tumbling window's) goes as it is.
        let reading = batch.is_empty() && !ended;
        // A window is over only once a read that began after its end found nothing: a read
        // that began earlier may have missed records put (and stamped) inside the window.
        let mut window_over = false;
        let mut empty_read_at: Option<i64> = None;
        if reading {
            loop {
                if batch.is_empty()
                    && let Some(w) = &window
                    && empty_read_at.is_some_and(|t| t >= w.start_ms + window_ms)
                {
                    window_over = true;
                    break;
                }
                let it = match &iter {
                    Some(it) => it.clone(),
                    None => match shard
                        .source
                        .iterator(
                            &*p.stream,
                            &shard.ctx,
                            &shard.spec.source_arn,
                            &shard.id,
                            start.position(),
                        )
                        .await
                    {
                        Ok(it) => it,
                        Err(e) => {
                            tracing::warn!(mapping = %shard.spec.uuid, shard = %shard.id, error = %e.message, "no shard iterator");
                            Clock::pause_real(std::time::Duration::from_secs(1)).await;
                            break;
                        }
                    },
                };
                let want = size - batch.len();
                let read_at = p.clock.now_ms();
                let page = match shard
                    .source
                    .read(&*p.stream, &shard.ctx, &it, want.min(10_000))
                    .await
                {
                    Ok(page) => page,
                    Err(e) => {
                        // An expired iterator is taken again from the checkpoint (records already
                        // gathered are dropped and read again).
                        if e.code != "ExpiredIteratorException" {
                            tracing::warn!(mapping = %shard.spec.uuid, shard = %shard.id, error = %e.message, "GetRecords failed");
                            Clock::pause_real(std::time::Duration::from_secs(1)).await;
                        }
                        iter = None;
                        batch.clear();
                        break;
                    }
                };
                iter = page.next;
                let empty = page.records.is_empty();
                batch.extend(page.records);
                if iter.is_none() {
                    ended = true;
                    break;
                }
                if batch.is_empty() {
                    empty_read_at = Some(read_at);
                    // An open window that this read proves over closes at once; else wait.
                    if window
                        .as_ref()
                        .is_none_or(|w| read_at < w.start_ms + window_ms)
                    {
                        Clock::pause_real(IDLE_POLL).await;
                    }
                    continue;
                }
                let due = *deadline.get_or_insert(
                    p.clock.now_ms() + i64::from(shard.spec.batching_window_s) * 1000,
                );
                if batch.len() >= size || p.clock.now_ms() >= due {
                    break;
                }
                if empty {
                    Clock::pause_real(IDLE_POLL).await;
                }
            }
        }
        if window_ms > 0
            && let Some(first) = batch.first()
        {
            let w = window_start(first.arrival_ms, window_ms);
            if let Some(cut) = batch
                .iter()
                .position(|r| window_start(r.arrival_ms, window_ms) != w)
            {
                carry = batch.split_off(cut);
            }
            // A batch of a later window closes the earlier one first.
            if window.as_ref().is_some_and(|x| x.start_ms != w)
                && let Some(old) = window.take()
            {
                final_invoke(&p, &shard, old, window_ms, false).await;
            }
        } else if batch.is_empty()
            && window_over
            && let Some(w) = window.take()
        {
            final_invoke(&p, &shard, w, window_ms, false).await;
        }
        if let Some(last) = batch.last().map(|r| r.seq.clone()) {
            let kept: Vec<StreamRecord> = batch
                .into_iter()
                .filter(|r| filters.is_empty() || filters.iter().any(|f| matches(f, &shard, r)))
                .collect();
            if lanes > 1 {
                run_lanes(&p, &shard, kept, lanes).await;
            } else if !kept.is_empty() {
                if window_ms > 0 {
                    let w = window_start(kept[0].arrival_ms, window_ms);
                    window.get_or_insert_with(|| Window {
                        start_ms: w,
                        state: json!({}),
                    });
                }
                let mut done = None;
                process(&p, &shard, kept, &mut done, window.as_mut(), true).await;
                if window_ms > 0
                    && let Some(w) = window.take_if(|w| w.state.to_string().len() > MAX_STATE_BYTES)
                {
                    final_invoke(&p, &shard, w, window_ms, true).await;
                }
            }
            // Filtered-out records and every lane's are done: the checkpoint passes them.
            save_progress(&p.store, &shard.spec.uuid, &shard.id, last.as_bytes()).await;
            start = Start::After(last);
        }
        if ended && carry.is_empty() {
            if let Some(w) = window.take() {
                final_invoke(&p, &shard, w, window_ms, false).await;
            }
            save_progress(&p.store, &shard.spec.uuid, &shard.id, ENDED).await;
            tracing::info!(mapping = %shard.spec.uuid, shard = %shard.id, "Shard read to its end.");
            return;
        }
    }
}

/// AWS ends a tumbling window early when its state outgrows 1 MB.
const MAX_STATE_BYTES: usize = 1024 * 1024;

/// A tumbling window in progress: where it starts and the state the function last returned.
struct Window {
    start_ms: i64,
    state: Value,
}

/// Windows are aligned to the epoch, as AWS's are, by the records' arrival times.
fn window_start(arrival_ms: i64, window_ms: i64) -> i64 {
    arrival_ms - arrival_ms.rem_euclid(window_ms)
}

/// What a tumbling-window invocation adds to the event.
struct WindowCall<'a> {
    start_ms: i64,
    end_ms: i64,
    state: &'a Value,
    is_final: bool,
    terminated_early: bool,
}

/// Filters see Kinesis data as JSON when it is JSON (AWS filters Kinesis records only on
/// `data`), and DynamoDB records as they are.
fn matches(pattern: &Pattern, shard: &Shard, r: &StreamRecord) -> bool {
    let view = match shard.source {
        ShardSource::Kinesis => {
            let decoded = r.raw["Data"]
                .as_str()
                .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
            match decoded {
                Some(data) => json!({"data": data}),
                None => json!({}),
            }
        }
        ShardSource::DynamoDbStreams => r.raw.clone(),
    };
    pattern.matches(&view.to_string()).unwrap_or(false)
}

/// ParallelizationFactor: the records go to lanes by partition key, each lane runs its
/// batches in order, the lanes run at once. The shard's checkpoint moves only after every
/// lane finished (a crash re-runs the whole read: at least once, never a skipped record).
async fn run_lanes(p: &Parts, shard: &Shard, records: Vec<StreamRecord>, lanes: usize) {
    use std::hash::{Hash, Hasher};
    let mut by_lane: Vec<Vec<StreamRecord>> = vec![Vec::new(); lanes];
    for r in records {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        r.partition_key.hash(&mut h);
        by_lane[(h.finish() % lanes as u64) as usize].push(r);
    }
    let size = shard.spec.batch_size.max(1) as usize;
    let mut set = tokio::task::JoinSet::new();
    for lane in by_lane.into_iter().filter(|l| !l.is_empty()) {
        let (p, shard) = (p.clone(), shard.clone());
        set.spawn(async move {
            for chunk in lane.chunks(size) {
                let mut done = None;
                process(&p, &shard, chunk.to_vec(), &mut done, None, false).await;
            }
        });
    }
    while set.join_next().await.is_some() {}
}

/// The invocation that closes a tumbling window: no records, the last state,
/// `isFinalInvokeForWindow`. Retried like a batch (up to 3 tries when retries are unlimited,
/// so a failing final call cannot hold the shard forever).
async fn final_invoke(p: &Parts, shard: &Shard, w: Window, window_ms: i64, early: bool) {
    let call = WindowCall {
        start_ms: w.start_ms,
        end_ms: w.start_ms + window_ms,
        state: &w.state,
        is_final: true,
        terminated_early: early,
    };
    let limit = match shard.spec.maximum_retry_attempts {
        r if r < 0 => 2,
        r => r as u32,
    };
    let mut attempts = 0;
    let mut backoff = BACKOFF_START_MS;
    loop {
        match invoke(p, shard, &[], Some(&call)).await.0 {
            Outcome::Done => return,
            Outcome::NotRun => {}
            Outcome::Failed { .. } => {
                attempts += 1;
                if attempts > limit {
                    tracing::warn!(mapping = %shard.spec.uuid, shard = %shard.id, "the final invocation of a window failed; moving on");
                    return;
                }
            }
        }
        p.clock.sleep_ms(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX_MS);
    }
}

/// How one invocation of a batch ended.
enum Outcome {
    Done,
    /// The records from this index on failed (0: all of them).
    Failed {
        from: usize,
        function_error: Option<String>,
        version: String,
    },
    /// The invocation did not run (throttled, function missing): retried without counting.
    NotRun,
}

/// Lambda's event for a batch: the records, plus the window's fields in a tumbling window.
fn batch_event(shard: &Shard, records: &[StreamRecord], window: Option<&WindowCall<'_>>) -> Value {
    let mut event = json!({"Records": records
        .iter()
        .map(|r| shard.source.event_record(r, &shard.id, &shard.spec.source_arn, &shard.ctx))
        .collect::<Vec<_>>()});
    if let Some(w) = window {
        event["window"] = json!({
            "start": tsumiki_core::clock::iso8601_ms(w.start_ms),
            "end": tsumiki_core::clock::iso8601_ms(w.end_ms),
        });
        event["state"] = w.state.clone();
        event["shardId"] = json!(shard.id);
        event["eventSourceARN"] = json!(shard.spec.source_arn);
        event["isFinalInvokeForWindow"] = json!(w.is_final);
        event["isWindowTerminatedEarly"] = json!(w.terminated_early);
    }
    event
}

/// Invokes the function with a batch; answers how it ended and, in a tumbling window, the
/// state the function returned.
async fn invoke(
    p: &Parts,
    shard: &Shard,
    records: &[StreamRecord],
    window: Option<&WindowCall<'_>>,
) -> (Outcome, Option<Value>) {
    let Some(invoker) = p.invoker.upgrade() else {
        return (Outcome::NotRun, None);
    };
    let event = batch_event(shard, records, window);
    let request_id = tsumiki_core::ids::request_id();
    match invoker
        .invoke(
            &shard.spec.function,
            event.to_string().into_bytes(),
            &request_id,
        )
        .await
    {
        Ok(r) if r.function_error.is_none() => {
            let state = window.map(|_| {
                serde_json::from_slice::<Value>(&r.payload)
                    .ok()
                    .and_then(|v| v.get("state").cloned())
                    .filter(Value::is_object)
                    .unwrap_or_else(|| json!({}))
            });
            if !shard.spec.report_item_failures {
                return (Outcome::Done, state);
            }
            match first_failed(&r.payload, records) {
                None => (Outcome::Done, state),
                Some(from) => (
                    Outcome::Failed {
                        from,
                        function_error: None,
                        version: r.executed_version,
                    },
                    state,
                ),
            }
        }
        Ok(r) => (
            Outcome::Failed {
                from: 0,
                function_error: r.function_error,
                version: r.executed_version,
            },
            None,
        ),
        Err(e) => {
            tracing::info!(mapping = %shard.spec.uuid, error = %e.code, "batch not processed; retrying");
            (Outcome::NotRun, None)
        }
    }
}

/// The index of the first record a partial batch response reports as failed. A response
/// naming a sequence number not in the batch (or an empty identifier) fails the whole batch,
/// as AWS does.
fn first_failed(payload: &[u8], records: &[StreamRecord]) -> Option<usize> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    let failures = v.get("batchItemFailures")?.as_array()?;
    let mut first: Option<usize> = None;
    for f in failures {
        let id = f
            .get("itemIdentifier")
            .and_then(Value::as_str)
            .unwrap_or("");
        let Some(i) = records.iter().position(|r| r.seq == id) else {
            return Some(0);
        };
        first = Some(first.map_or(i, |x| x.min(i)));
    }
    first
}

/// Runs one batch to its end: success, or retries spent and reported to the destination. With
/// `save`, the checkpoint moves after each finished piece; `done` is the last finished sequence
/// number. In a tumbling window each success carries the function's state forward.
async fn process(
    p: &Parts,
    shard: &Shard,
    batch: Vec<StreamRecord>,
    done: &mut Option<String>,
    mut window: Option<&mut Window>,
    save: bool,
) {
    let window_ms = i64::from(shard.spec.tumbling_window_s) * 1000;
    // Pieces in shard order, each with the attempts it has had.
    let mut work: VecDeque<(Vec<StreamRecord>, u32)> = VecDeque::from([(batch, 0)]);
    let mut backoff = BACKOFF_START_MS;
    while let Some((records, attempts)) = work.pop_front() {
        let spec = &shard.spec;
        let now = p.clock.now_ms();
        let oldest = records.first().map_or(now, |r| r.arrival_ms);
        if spec.maximum_record_age_s >= 0
            && now - oldest > i64::from(spec.maximum_record_age_s) * 1000
        {
            give_up(p, shard, &records, attempts, "RecordAgeExceeded", None).await;
            finish(p, shard, &records, done, save).await;
            continue;
        }
        let (outcome, state) = match window.as_deref() {
            Some(w) => {
                let call = WindowCall {
                    start_ms: w.start_ms,
                    end_ms: w.start_ms + window_ms,
                    state: &w.state,
                    is_final: false,
                    terminated_early: false,
                };
                invoke(p, shard, &records, Some(&call)).await
            }
            None => invoke(p, shard, &records, None).await,
        };
        if let (Some(w), Some(state)) = (window.as_deref_mut(), state) {
            w.state = state;
        }
        let (records, attempts, function_error, version) = match outcome {
            Outcome::Done => {
                finish(p, shard, &records, done, save).await;
                backoff = BACKOFF_START_MS;
                continue;
            }
            Outcome::NotRun => {
                p.clock.sleep_ms(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX_MS);
                work.push_front((records, attempts));
                continue;
            }
            Outcome::Failed {
                from,
                function_error,
                version,
            } => {
                let mut records = records;
                let rest = records.split_off(from);
                if !records.is_empty() {
                    finish(p, shard, &records, done, save).await;
                }
                (rest, attempts + 1, function_error, version)
            }
        };
        let info = (function_error, version);
        if spec.bisect_on_error && records.len() > 1 {
            let mut first = records;
            let second = first.split_off(first.len() / 2);
            work.push_front((second, attempts));
            work.push_front((first, attempts));
            continue;
        }
        let retries_spent =
            spec.maximum_retry_attempts >= 0 && attempts > spec.maximum_retry_attempts as u32;
        let too_old = spec.maximum_retry_attempts < 0 && expired(p, shard, &records).await;
        if retries_spent || too_old {
            let condition = if too_old {
                "RecordAgeExceeded"
            } else {
                "RetryAttemptsExhausted"
            };
            give_up(p, shard, &records, attempts, condition, Some(info)).await;
            finish(p, shard, &records, done, save).await;
            backoff = BACKOFF_START_MS;
            continue;
        }
        tracing::info!(mapping = %spec.uuid, shard = %shard.id, attempts, "batch failed; the shard waits and retries");
        p.clock.sleep_ms(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX_MS);
        work.push_front((records, attempts));
    }
}

/// Whether the oldest record has left the stream's retention (unlimited retries end there).
async fn expired(p: &Parts, shard: &Shard, records: &[StreamRecord]) -> bool {
    let Some(first) = records.first() else {
        return true;
    };
    match shard
        .source
        .retention_ms(&*p.stream, &shard.ctx, &shard.spec.source_arn)
        .await
    {
        Some(retention) => p.clock.now_ms() - first.arrival_ms > retention,
        // A deleted stream's records are gone.
        None => true,
    }
}

async fn finish(
    p: &Parts,
    shard: &Shard,
    records: &[StreamRecord],
    done: &mut Option<String>,
    save: bool,
) {
    if let Some(last) = records.last() {
        if save {
            save_progress(&p.store, &shard.spec.uuid, &shard.id, last.seq.as_bytes()).await;
        }
        *done = Some(last.seq.clone());
    }
}

/// AWS's on-failure record: the batch's metadata, not its records.
fn failure_record(
    shard: &Shard,
    records: &[StreamRecord],
    attempts: u32,
    condition: &str,
    function_arn: &str,
    info: Option<(Option<String>, String)>,
    now_ms: i64,
) -> Option<Value> {
    let (first, last) = (records.first()?, records.last()?);
    let mut response = json!({"statusCode": 200, "executedVersion": "$LATEST"});
    if let Some((error, version)) = info {
        response["executedVersion"] = json!(version);
        if let Some(e) = error {
            response["functionError"] = json!(e);
        }
    }
    let mut body = json!({
        "requestContext": {
            "requestId": tsumiki_core::ids::request_id(),
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "responseContext": response,
        "version": "1.0",
        "timestamp": tsumiki_core::clock::iso8601_ms(now_ms),
    });
    body[shard.source.batch_info_key()] = json!({
        "shardId": shard.id,
        "startSequenceNumber": first.seq,
        "endSequenceNumber": last.seq,
        "approximateArrivalOfFirstRecord": tsumiki_core::clock::iso8601_ms(first.arrival_ms),
        "approximateArrivalOfLastRecord": tsumiki_core::clock::iso8601_ms(last.arrival_ms),
        "batchSize": records.len(),
        "streamArn": shard.spec.source_arn,
    });
    Some(body)
}

/// Sends AWS's on-failure record to the destination.
async fn give_up(
    p: &Parts,
    shard: &Shard,
    records: &[StreamRecord],
    attempts: u32,
    condition: &str,
    info: Option<(Option<String>, String)>,
) {
    let spec = &shard.spec;
    tracing::warn!(mapping = %spec.uuid, shard = %shard.id, records = records.len(), condition, "skipping a batch that failed");
    let Some(dest) = &spec.on_failure else {
        return;
    };
    let function_arn = p
        .invoker
        .upgrade()
        .and_then(|i| i.async_settings(&spec.function).ok())
        .map(|s| s.function_arn)
        .unwrap_or_else(|| spec.function.function.clone());
    let Some(body) = failure_record(
        shard,
        records,
        attempts,
        condition,
        &function_arn,
        info,
        p.clock.now_ms(),
    ) else {
        return;
    };
    let result = match deliver::parse(dest) {
        Destination::Sqs {
            region,
            account,
            name,
        } => deliver::to_sqs(&p.services, region, account, name, &body.to_string(), None).await,
        Destination::Sns {
            region,
            account,
            arn,
        } => deliver::to_sns(&p.services, region, account, arn, &body.to_string(), None).await,
        _ => Err(AwsError::not_implemented(
            "lambda",
            "on-failure destinations other than SQS and SNS for stream sources",
        )),
    };
    if let Err(e) = result {
        tracing::warn!(mapping = %spec.uuid, destination = %dest, error = %e.message, "could not deliver to the on-failure destination");
    }
}

/// Sends each mapping to the poller of its source: SQS queues to the queue pollers, Kinesis
/// and DynamoDB streams to the shard pollers, so Lambda holds one handle.
pub struct PollerRouter {
    queues: Arc<dyn EventSourcePollers>,
    shards: Arc<dyn EventSourcePollers>,
}

impl PollerRouter {
    pub fn new(
        queues: Arc<dyn EventSourcePollers>,
        shards: Arc<dyn EventSourcePollers>,
    ) -> Arc<PollerRouter> {
        Arc::new(PollerRouter { queues, shards })
    }
}

impl EventSourcePollers for PollerRouter {
    fn configure(&self, spec: MappingSpec) {
        if is_stream_source(&spec.source_arn) {
            self.shards.configure(spec);
        } else {
            self.queues.configure(spec);
        }
    }

    fn remove(&self, uuid: &str) {
        self.queues.remove(uuid);
        self.shards.remove(uuid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: &str) -> StreamRecord {
        StreamRecord {
            seq: seq.to_string(),
            arrival_ms: 1500,
            partition_key: "k".into(),
            raw: json!({"SequenceNumber": seq, "ApproximateArrivalTimestamp": 1.5, "Data": "aGk=", "PartitionKey": "k"}),
        }
    }

    fn spec(arn: &str) -> MappingSpec {
        MappingSpec {
            uuid: "u".into(),
            source_arn: arn.into(),
            function: tsumiki_ports::FunctionTarget {
                account: "123456789012".into(),
                region: "us-east-1".into(),
                function: "f".into(),
                qualifier: None,
            },
            batch_size: 100,
            batching_window_s: 0,
            report_item_failures: false,
            filters: vec![],
            max_concurrency: 1,
            enabled: true,
            starting_position: Some("TRIM_HORIZON".into()),
            starting_position_timestamp_ms: None,
            maximum_retry_attempts: -1,
            maximum_record_age_s: -1,
            bisect_on_error: false,
            on_failure: None,
            parallelization_factor: 1,
            tumbling_window_s: 0,
        }
    }

    fn shard(arn: &str) -> Shard {
        let source = ShardSource::of_arn(arn).expect("a stream ARN");
        Shard {
            spec: spec(arn),
            source,
            id: "shardId-000000000000".into(),
            ctx: context(arn, source).expect("an ARN"),
        }
    }

    #[test]
    fn partial_batch_responses_name_the_first_failed_record() {
        let records = vec![rec("1"), rec("2"), rec("3")];
        let r = |v: Value| first_failed(v.to_string().as_bytes(), &records);
        assert_eq!(r(json!({"batchItemFailures": []})), None);
        assert_eq!(
            r(json!({"batchItemFailures": [{"itemIdentifier": "3"}, {"itemIdentifier": "2"}]})),
            Some(1)
        );
        assert_eq!(
            r(json!({"batchItemFailures": [{"itemIdentifier": "9"}]})),
            Some(0)
        );
        assert_eq!(r(json!({"batchItemFailures": [{}]})), Some(0));
        assert_eq!(r(json!(null)), None);
    }

    #[test]
    fn stream_sources_go_to_the_shard_pollers() {
        assert!(is_stream_source(
            "arn:aws:kinesis:us-east-1:123456789012:stream/s"
        ));
        assert!(is_stream_source(
            "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-01-01T00:00:00.000"
        ));
        assert!(!is_stream_source("arn:aws:sqs:us-east-1:1:q"));
    }

    /// The events parse with the `aws_lambda_events` types, as real Rust functions read them.
    #[test]
    fn events_parse_as_aws_lambda_events_types() {
        use aws_lambda_events::event::{dynamodb, kinesis};
        let k = shard("arn:aws:kinesis:us-east-1:123456789012:stream/s");
        let e = batch_event(&k, &[rec("49"), rec("50")], None);
        let parsed: kinesis::KinesisEvent = serde_json::from_value(e).expect("a KinesisEvent");
        assert_eq!(parsed.records.len(), 2);
        assert_eq!(parsed.records[0].kinesis.data.0, b"hi".to_vec());
        assert_eq!(
            parsed.records[1].event_id.as_deref(),
            Some("shardId-000000000000:50")
        );
        // The Rust types take string-valued state; the function chooses the state's shape.
        let state = json!({"count": "2"});
        let call = WindowCall {
            start_ms: 1_764_378_000_000,
            end_ms: 1_764_378_060_000,
            state: &state,
            is_final: true,
            terminated_early: false,
        };
        let e = batch_event(&k, &[], Some(&call));
        let parsed: kinesis::KinesisTimeWindowEvent =
            serde_json::from_value(e).expect("a KinesisTimeWindowEvent");
        let w = &parsed.time_window_properties;
        assert!(w.is_final_invoke_for_window && !w.is_window_terminated_early);
        assert_eq!(w.shard_id.as_deref(), Some("shardId-000000000000"));
        assert_eq!(w.state.get("count").map(String::as_str), Some("2"));
        assert_eq!(w.window.start.timestamp(), 1_764_378_000);
        assert_eq!(w.window.end.timestamp(), 1_764_378_060);
        assert!(parsed.kinesis_event.records.is_empty());

        let arn = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-01-01T00:00:00.000";
        let d = shard(arn);
        let raw = json!({
            "eventID": "e1", "eventName": "MODIFY", "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
            "dynamodb": {
                "ApproximateCreationDateTime": 1_764_378_000.0,
                "Keys": {"id": {"S": "a"}},
                "NewImage": {"id": {"S": "a"}, "n": {"N": "2"}},
                "OldImage": {"id": {"S": "a"}, "n": {"N": "1"}},
                "SequenceNumber": "100", "SizeBytes": 30,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
        });
        let r = StreamRecord {
            seq: "100".into(),
            arrival_ms: 0,
            partition_key: "k".into(),
            raw,
        };
        let e = batch_event(&d, &[r], None);
        let parsed: dynamodb::Event = serde_json::from_value(e).expect("a DynamoDB Event");
        assert_eq!(parsed.records[0].event_source_arn.as_deref(), Some(arn));
        assert_eq!(
            parsed.records[0].change.sequence_number.as_deref(),
            Some("100")
        );
    }

    #[test]
    fn failure_records_name_the_batch_of_their_source() {
        let arn = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-01-01T00:00:00.000";
        let s = shard(arn);
        let body = failure_record(
            &s,
            &[rec("7"), rec("9")],
            3,
            "RetryAttemptsExhausted",
            "arn:aws:lambda:us-east-1:123456789012:function:f",
            Some((Some("Unhandled".into()), "$LATEST".into())),
            0,
        )
        .expect("a record");
        let info = &body["DDBStreamBatchInfo"];
        assert_eq!(info["shardId"], "shardId-000000000000");
        assert_eq!(info["startSequenceNumber"], "7");
        assert_eq!(info["endSequenceNumber"], "9");
        assert_eq!(info["batchSize"], 2);
        assert_eq!(info["streamArn"], arn);
        assert_eq!(body["requestContext"]["approximateInvokeCount"], 3);
        assert_eq!(body["responseContext"]["functionError"], "Unhandled");
        assert!(body.get("KinesisBatchInfo").is_none());
        let k = shard("arn:aws:kinesis:us-east-1:123456789012:stream/s");
        let body = failure_record(&k, &[rec("1")], 1, "RecordAgeExceeded", "f", None, 0)
            .expect("a record");
        assert_eq!(body["KinesisBatchInfo"]["batchSize"], 1);
    }

    /// A DynamoDB stream after a shard rollover: a closed parent with two records, an open
    /// child with two. The poller reads the whole parent before the child.
    struct Rollover;

    const DDB: &str =
        "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-01-01T00:00:00.000";

    fn ddb_record(seq: u64) -> Value {
        json!({"eventID": format!("e{seq}"), "eventName": "INSERT", "eventVersion": "1.1",
               "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
               "dynamodb": {"ApproximateCreationDateTime": 1.0e9, "Keys": {"id": {"S": "k"}},
                            "SequenceNumber": seq.to_string(), "SizeBytes": 10,
                            "StreamViewType": "KEYS_ONLY"}})
    }

    #[async_trait::async_trait]
    impl Service for Rollover {
        fn name(&self) -> &'static str {
            "dynamodbstreams"
        }
        async fn call(
            &self,
            _ctx: &RequestContext,
            operation: &str,
            input: Value,
        ) -> Result<Value, AwsError> {
            // Parent: sequence numbers 1-2, closed; child: 3-4, open. An iterator is
            // `shard/after`.
            let shard_of = |s: &str| {
                if s == "parent" {
                    (1u64, 2u64, true)
                } else {
                    (3, 4, false)
                }
            };
            match operation {
                "DescribeStream" => Ok(json!({"StreamDescription": {"Shards": [
                    {"ShardId": "child", "ParentShardId": "parent",
                     "SequenceNumberRange": {"StartingSequenceNumber": "3"}},
                    {"ShardId": "parent", "SequenceNumberRange":
                        {"StartingSequenceNumber": "1", "EndingSequenceNumber": "2"}},
                ]}})),
                "GetShardIterator" => {
                    let shard = input["ShardId"].as_str().unwrap_or_default();
                    let after = match input["ShardIteratorType"].as_str() {
                        Some("AFTER_SEQUENCE_NUMBER") => input["SequenceNumber"]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0),
                        _ => shard_of(shard).0 - 1,
                    };
                    Ok(json!({"ShardIterator": format!("{shard}/{after}")}))
                }
                "GetRecords" => {
                    let it = input["ShardIterator"].as_str().unwrap_or_default();
                    let (shard, after) = it.split_once('/').unwrap_or_default();
                    let after: u64 = after.parse().unwrap_or(0);
                    let (first, last, closed) = shard_of(shard);
                    let recs: Vec<Value> = (first.max(after + 1)..=last).map(ddb_record).collect();
                    let mut out = json!({"Records": recs});
                    if !closed {
                        out["NextShardIterator"] = json!(format!("{shard}/{}", last.max(after)));
                    }
                    Ok(out)
                }
                other => Err(AwsError::not_implemented("dynamodbstreams", other)),
            }
        }
        async fn reset(&self) -> Result<(), AwsError> {
            Ok(())
        }
    }

    /// Records every event it is invoked with.
    struct Recorder(parking_lot::Mutex<Vec<Value>>);

    #[async_trait::async_trait]
    impl FunctionInvoker for Recorder {
        async fn invoke(
            &self,
            _target: &tsumiki_ports::FunctionTarget,
            payload: Vec<u8>,
            request_id: &str,
        ) -> Result<tsumiki_ports::FunctionResult, AwsError> {
            self.0
                .lock()
                .push(serde_json::from_slice(&payload).unwrap_or(Value::Null));
            Ok(tsumiki_ports::FunctionResult {
                payload: b"{}".to_vec(),
                function_error: None,
                executed_version: "$LATEST".into(),
                request_id: request_id.to_string(),
            })
        }
        fn async_settings(
            &self,
            _target: &tsumiki_ports::FunctionTarget,
        ) -> Result<tsumiki_ports::AsyncSettings, AwsError> {
            Err(AwsError::internal())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dynamodb_children_are_read_after_their_parent_ends() {
        let store = Store::open(None, tsumiki_store::SyncMode::Normal).expect("a store");
        let recorder = Arc::new(Recorder(parking_lot::Mutex::new(Vec::new())));
        let invoker: Arc<dyn FunctionInvoker> = recorder.clone();
        let pollers = ShardPollers::new(
            store.clone(),
            Arc::new(Clock::real()),
            Arc::downgrade(&invoker),
        );
        let mut services = Services::default();
        services.register(Arc::new(Rollover));
        pollers.set_services(services);
        let mut spec = spec(DDB);
        spec.batch_size = 10;
        pollers.configure(spec);
        let mut seqs: Vec<String> = Vec::new();
        for _ in 0..100 {
            seqs = recorder
                .0
                .lock()
                .iter()
                .flat_map(|e| e["Records"].as_array().cloned().unwrap_or_default())
                .filter_map(|r| {
                    r.pointer("/dynamodb/SequenceNumber")
                        .and_then(Value::as_str)
                        .map(String::from)
                })
                .collect();
            if seqs.len() >= 4 {
                break;
            }
            Clock::pause_real(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(seqs, ["1", "2", "3", "4"]);
        let events = recorder.0.lock().clone();
        // The parent's batch came alone: the child waited for the parent's end.
        assert_eq!(events[0]["Records"].as_array().map(Vec::len), Some(2));
        assert_eq!(events[0]["Records"][0]["eventSourceARN"], DDB);
        assert_eq!(progress(&store, "u", "parent").await, Progress::Ended);
        assert_eq!(
            progress(&store, "u", "child").await,
            Progress::After("4".into())
        );
        pollers.remove("u");
    }
}
