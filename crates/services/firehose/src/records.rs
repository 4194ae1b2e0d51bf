//! PutRecord and PutRecordBatch: records enter the stream's buffer and are durable before
//! the call answers; the flusher delivers them.

use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_store::Batch;

use crate::state::{self, BufRecord, StreamKey};
use crate::{Firehose, invalid, not_found, store_error, stream_key};

/// AWS: a record holds at most 1,000 KiB of data.
const MAX_RECORD_BYTES: usize = 1000 * 1024;
/// AWS: a PutRecordBatch carries at most 500 records and 4 MiB.
const MAX_BATCH_RECORDS: usize = 500;
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// The decoded length of a base64 blob.
fn data_len(data: &str) -> usize {
    let pad = data.bytes().rev().take_while(|b| *b == b'=').count();
    (data.len() / 4 * 3).saturating_sub(pad)
}

fn data_of(record: &Value) -> Result<String, AwsError> {
    let data = record
        .get("Data")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let len = data_len(&data);
    if len > MAX_RECORD_BYTES {
        return Err(invalid(format!(
            "Record size {len} bytes exceeds the maximum of {MAX_RECORD_BYTES} bytes (1,000 KiB)."
        )));
    }
    Ok(data)
}

pub async fn put_record(
    fh: &Firehose,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input);
    let data = data_of(input.get("Record").unwrap_or(&Value::Null))?;
    let ids = fh.append(&key, vec![(data, None)], None, true).await?;
    Ok(json!({"RecordId": ids[0], "Encrypted": false}))
}

pub async fn put_record_batch(
    fh: &Firehose,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = stream_key(ctx, input);
    let records = input
        .get("Records")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if records.len() > MAX_BATCH_RECORDS {
        return Err(invalid(format!(
            "Records count {} exceeds the maximum of {MAX_BATCH_RECORDS} records per call.",
            records.len()
        )));
    }
    let data = records.iter().map(data_of).collect::<Result<Vec<_>, _>>()?;
    let total: usize = data.iter().map(|d| data_len(d)).sum();
    if total > MAX_BATCH_BYTES {
        return Err(invalid(format!(
            "Records size {total} bytes exceeds the maximum of {MAX_BATCH_BYTES} bytes (4 MiB) per call."
        )));
    }
    let ids = fh
        .append(
            &key,
            data.into_iter().map(|d| (d, None)).collect(),
            None,
            true,
        )
        .await?;
    // Every record is taken or the whole call fails (a store error), so no per-record
    // failures are ever reported; AWS reports them when it throttles.
    Ok(json!({
        "FailedPutCount": 0,
        "Encrypted": false,
        "RequestResponses": ids.into_iter().map(|id| json!({"RecordId": id})).collect::<Vec<_>>(),
    }))
}

/// Kinesis metadata of a record read from a source stream: (shard, partition key, sequence).
pub type KinesisMeta = (String, String, String);

impl Firehose {
    /// Adds records (base64 data) to the stream's buffer, with a Kinesis checkpoint in the same
    /// batch; answers their ids once durable. `direct` calls are refused on Kinesis-sourced
    /// streams, as AWS does.
    pub(crate) async fn append(
        &self,
        key: &StreamKey,
        records: Vec<(String, Option<KinesisMeta>)>,
        checkpoint: Option<(String, String)>,
        direct: bool,
    ) -> Result<Vec<String>, AwsError> {
        let (ids, commit) = {
            let mut state = self.state.lock();
            let stream = state.streams.get_mut(key).ok_or_else(|| not_found(key))?;
            if direct && stream.meta.stream_type != "DirectPut" {
                return Err(invalid(format!(
                    "This operation is not permitted on KinesisStreamAsSource delivery stream type. (Firehose {})",
                    key.name
                )));
            }
            let now = self.clock.now_ms();
            let mut batch = Batch::new();
            let mut ids = Vec::with_capacity(records.len());
            for (data, kinesis) in records {
                let seq = stream.next_seq;
                stream.next_seq += 1;
                let id = format!(
                    "{}{seq:020}",
                    uuid::Uuid::new_v4().simple().to_string().to_uppercase()
                );
                let record = BufRecord {
                    data,
                    arrival_ms: now,
                    id: id.clone(),
                    kinesis,
                };
                state::put_record(&mut batch, key, seq, &record);
                stream.buffered_bytes += record.len();
                stream.buffer.insert(seq, record);
                ids.push(id);
            }
            if let Some((shard, sequence)) = checkpoint {
                state::put_checkpoint(&mut batch, key, &shard, &sequence);
                stream.checkpoints.insert(shard, sequence);
            }
            (ids, self.store.commit(batch))
        };
        commit.await.map_err(store_error)?;
        self.wake.notify_one();
        Ok(ids)
    }
}
