//! Tables: create, describe, list, update (throughput, billing, streams, GSIs), delete; TTL
//! settings and the sweep that deletes expired items; tags.

use std::collections::BTreeMap;
use std::sync::Weak;

use serde_json::{Value, json};
use tsumiki_core::{AwsError, RequestContext};
use tsumiki_lang::dynamodb::AttrValue;
use tsumiki_store::Batch;

use crate::state::{self, IndexMeta, KeyDef, StreamMeta, Table, TableKey, TableMeta};
use crate::{Inner, invalid_param, not_found, store_error, table_key, validation};

const SECOND_MS: i64 = 1000;

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

/// Reads a KeySchema against the AttributeDefinitions.
fn key_def(schema: &Value, defs: &BTreeMap<String, String>) -> Result<KeyDef, AwsError> {
    let elems = schema.as_array().cloned().unwrap_or_default();
    let mut hash = None;
    let mut range = None;
    for (i, e) in elems.iter().enumerate() {
        let name = s(e, "AttributeName").unwrap_or_default();
        let kind = s(e, "KeyType").unwrap_or_default();
        let Some(ty) = defs.get(&name) else {
            let keys: Vec<String> = elems.iter().filter_map(|e| s(e, "AttributeName")).collect();
            let defined: Vec<&String> = defs.keys().collect();
            return Err(invalid_param(format!(
                "Some index key attributes are not defined in AttributeDefinitions. Keys: [{}], AttributeDefinitions: [{}]",
                keys.join(", "),
                defined
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        match (i, kind.as_str()) {
            (0, "HASH") => hash = Some((name, ty.clone())),
            (0, _) => {
                return Err(validation(
                    "Invalid KeySchema: The first KeySchemaElement is not a HASH key type",
                ));
            }
            (1, "RANGE") => range = Some((name, ty.clone())),
            (1, _) => {
                return Err(validation(
                    "Invalid KeySchema: The second KeySchemaElement is not a RANGE key type",
                ));
            }
            _ => return Err(validation("Invalid KeySchema: Too many KeySchemaElements")),
        }
    }
    if let (Some(h), Some(r)) = (&hash, &range)
        && h.0 == r.0
    {
        return Err(invalid_param(
            "Both the Hash Key and the Range Key element in the KeySchema have the same name",
        ));
    }
    let hash = hash.ok_or_else(|| validation("Invalid KeySchema: Some key element is missing"))?;
    Ok(KeyDef { hash, range })
}

fn index_meta(
    raw: &Value,
    defs: &BTreeMap<String, String>,
    global: bool,
) -> Result<IndexMeta, AwsError> {
    let name = s(raw, "IndexName").unwrap_or_default();
    let key = key_def(raw.get("KeySchema").unwrap_or(&Value::Null), defs)?;
    let projection = raw.get("Projection").cloned().unwrap_or(json!({}));
    let projection_type = s(&projection, "ProjectionType").unwrap_or_else(|| "ALL".into());
    let non_key: Vec<String> = projection
        .get("NonKeyAttributes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if projection_type != "INCLUDE" && !non_key.is_empty() {
        return Err(invalid_param(
            "ProjectionType is not INCLUDE, but NonKeyAttributes is specified",
        ));
    }
    Ok(IndexMeta {
        name,
        key,
        projection_type,
        non_key,
        global,
        raw: raw.clone(),
    })
}

fn stream_spec(spec: &Value, now_ms: i64) -> Result<Option<StreamMeta>, AwsError> {
    if spec.get("StreamEnabled").and_then(Value::as_bool) != Some(true) {
        if spec.get("StreamViewType").is_some() {
            return Err(validation(
                "One or more parameter values were invalid: Stream view type cannot be specified when stream is disabled",
            ));
        }
        return Ok(None);
    }
    let Some(view) = s(spec, "StreamViewType") else {
        return Err(invalid_param(
            "You must specify a StreamViewType when enabling a stream",
        ));
    };
    Ok(Some(StreamMeta {
        label: tsumiki_core::clock::iso8601_ms(now_ms)
            .trim_end_matches('Z')
            .to_string(),
        view_type: view,
        enabled: true,
        shards: Vec::new(),
    }))
}

fn throughput(input: &Value, billing: &str) -> Result<(i64, i64), AwsError> {
    let pt = input.get("ProvisionedThroughput");
    match (billing, pt) {
        ("PAY_PER_REQUEST", Some(_)) => Err(invalid_param(
            "Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST",
        )),
        ("PAY_PER_REQUEST", None) => Ok((0, 0)),
        (_, None) => Err(invalid_param(
            "ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED",
        )),
        (_, Some(pt)) => Ok((
            pt.get("ReadCapacityUnits")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            pt.get("WriteCapacityUnits")
                .and_then(Value::as_i64)
                .unwrap_or(0),
        )),
    }
}

pub(crate) async fn create_table(
    d: &Inner,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = table_key(ctx, input);
    let now = d.clock.now_ms();
    let mut defs = BTreeMap::new();
    for def in input
        .get("AttributeDefinitions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = s(def, "AttributeName").unwrap_or_default();
        if defs
            .insert(name.clone(), s(def, "AttributeType").unwrap_or_default())
            .is_some()
        {
            return Err(invalid_param(format!(
                "Duplicate AttributeName in AttributeDefinitions: {name}"
            )));
        }
    }
    let key_schema = input.get("KeySchema").cloned().unwrap_or(json!([]));
    let table_key_def = key_def(&key_schema, &defs)?;
    let billing = s(input, "BillingMode").unwrap_or_else(|| "PROVISIONED".into());
    let (read, write) = throughput(input, &billing)?;
    let mut indexes = Vec::new();
    for raw in input
        .get("LocalSecondaryIndexes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let idx = index_meta(raw, &defs, false)?;
        if idx.key.hash != table_key_def.hash {
            return Err(invalid_param(format!(
                "Index KeySchema does not have the same leading hash key as table KeySchema for index: {}. index hash key: {}, table hash key: {}",
                idx.name, idx.key.hash.0, table_key_def.hash.0
            )));
        }
        if table_key_def.range.is_none() {
            return Err(invalid_param(
                "Table KeySchema does not have a range key, which is required when specifying a LocalSecondaryIndex",
            ));
        }
        indexes.push(idx);
    }
    for raw in input
        .get("GlobalSecondaryIndexes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let idx = index_meta(raw, &defs, true)?;
        if billing == "PROVISIONED" && raw.get("ProvisionedThroughput").is_none() {
            return Err(invalid_param(format!(
                "ProvisionedThroughput is not specified for index: {}",
                idx.name
            )));
        }
        indexes.push(idx);
    }
    let mut names: Vec<&str> = indexes.iter().map(|i| i.name.as_str()).collect();
    names.sort();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(invalid_param("Duplicate index name"));
    }
    // Every attribute definition must be used by a key schema.
    let used: std::collections::BTreeSet<&str> = std::iter::once(&table_key_def)
        .chain(indexes.iter().map(|i| &i.key))
        .flat_map(|k| {
            std::iter::once(k.hash.0.as_str()).chain(k.range.as_ref().map(|r| r.0.as_str()))
        })
        .collect();
    if used.len() != defs.len() {
        return Err(invalid_param(
            "Number of attributes in KeySchema does not exactly match number of attributes defined in AttributeDefinitions",
        ));
    }
    let stream = match input.get("StreamSpecification") {
        Some(spec) => stream_spec(spec, now)?,
        None => None,
    };
    let tags: BTreeMap<String, String> = input
        .get("Tags")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| {
            (
                s(t, "Key").unwrap_or_default(),
                s(t, "Value").unwrap_or_default(),
            )
        })
        .collect();
    let meta = TableMeta {
        name: key.name.clone(),
        id: uuid::Uuid::new_v4().to_string(),
        key: table_key_def,
        attribute_definitions: input
            .get("AttributeDefinitions")
            .cloned()
            .unwrap_or(json!([])),
        key_schema,
        indexes,
        billing_mode: billing,
        read_capacity: read,
        write_capacity: write,
        created_ms: now,
        stream,
        old_streams: Vec::new(),
        ttl_attribute: None,
        tags,
        sse: input.get("SSESpecification").cloned(),
        table_class: s(input, "TableClass"),
        deletion_protection: input
            .get("DeletionProtectionEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        kinesis: Vec::new(),
    };
    let (commit, desc) = {
        let mut st = d.state.lock();
        if st.tables.contains_key(&key) {
            return Err(AwsError::new(
                "ResourceInUseException",
                400,
                format!("Table already exists: {}", key.name),
            ));
        }
        let mut table = Table::new(meta);
        if let Some(stream) = table.meta.stream.as_mut() {
            crate::streams::ensure_shard(stream, &table.records, &mut st.last_seq, now);
        }
        let desc = describe(&key, &table, "ACTIVE");
        let mut batch = Batch::new();
        state::put_table(&mut batch, &key, &table.meta);
        st.tables.insert(key, table);
        (d.store.commit(batch), desc)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({ "TableDescription": desc }))
}

/// The TableDescription AWS answers with.
pub(crate) fn describe(key: &TableKey, table: &Table, status: &str) -> Value {
    let m = &table.meta;
    let secs = m.created_ms as f64 / 1000.0;
    let arn = key.arn();
    let mut desc = json!({
        "TableName": m.name,
        "TableId": m.id,
        "TableArn": arn,
        "TableStatus": status,
        "AttributeDefinitions": m.attribute_definitions,
        "KeySchema": m.key_schema,
        "CreationDateTime": secs,
        "ProvisionedThroughput": {
            "NumberOfDecreasesToday": 0,
            "ReadCapacityUnits": m.read_capacity,
            "WriteCapacityUnits": m.write_capacity,
        },
        "TableSizeBytes": table.size_bytes,
        "ItemCount": table.item_count,
        "DeletionProtectionEnabled": m.deletion_protection,
    });
    if m.billing_mode == "PAY_PER_REQUEST" {
        desc["BillingModeSummary"] = json!({
            "BillingMode": "PAY_PER_REQUEST",
            "LastUpdateToPayPerRequestDateTime": secs,
        });
    }
    let render_index = |i: &IndexMeta| {
        let mut v = json!({
            "IndexName": i.name,
            "KeySchema": i.raw.get("KeySchema").cloned().unwrap_or(json!([])),
            "Projection": i.raw.get("Projection").cloned().unwrap_or(json!({"ProjectionType": "ALL"})),
            "IndexSizeBytes": 0,
            "ItemCount": 0,
            "IndexArn": format!("{arn}/index/{}", i.name),
        });
        if i.global {
            v["IndexStatus"] = json!("ACTIVE");
            let pt = i.raw.get("ProvisionedThroughput");
            v["ProvisionedThroughput"] = json!({
                "NumberOfDecreasesToday": 0,
                "ReadCapacityUnits": pt.and_then(|p| p.get("ReadCapacityUnits")).cloned().unwrap_or(json!(0)),
                "WriteCapacityUnits": pt.and_then(|p| p.get("WriteCapacityUnits")).cloned().unwrap_or(json!(0)),
            });
        }
        v
    };
    let lsis: Vec<Value> = m
        .indexes
        .iter()
        .filter(|i| !i.global)
        .map(render_index)
        .collect();
    let gsis: Vec<Value> = m
        .indexes
        .iter()
        .filter(|i| i.global)
        .map(render_index)
        .collect();
    if !lsis.is_empty() {
        desc["LocalSecondaryIndexes"] = json!(lsis);
    }
    if !gsis.is_empty() {
        desc["GlobalSecondaryIndexes"] = json!(gsis);
    }
    if let Some(stream) = &m.stream {
        desc["StreamSpecification"] = json!({
            "StreamEnabled": stream.enabled,
            "StreamViewType": stream.view_type,
        });
    }
    if let Some(stream) = m.stream.as_ref().or(m.old_streams.last()) {
        desc["LatestStreamLabel"] = json!(stream.label);
        desc["LatestStreamArn"] = json!(format!("{arn}/stream/{}", stream.label));
    }
    if let Some(sse) = &m.sse
        && sse.get("Enabled").and_then(Value::as_bool) == Some(true)
    {
        desc["SSEDescription"] = json!({
            "Status": "ENABLED",
            "SSEType": sse.get("SSEType").cloned().unwrap_or(json!("KMS")),
            "KMSMasterKeyArn": format!("arn:aws:kms:{}:{}:key/{}", key.region, key.account, m.id),
        });
    }
    if let Some(class) = &m.table_class {
        desc["TableClassSummary"] = json!({"TableClass": class});
    }
    desc
}

pub(crate) fn describe_table(
    d: &Inner,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = table_key(ctx, input);
    let st = d.state.lock();
    let table = st.tables.get(&key).ok_or_else(|| {
        AwsError::new(
            "ResourceNotFoundException",
            400,
            format!(
                "Requested resource not found: Table: {} not found",
                key.name
            ),
        )
    })?;
    Ok(json!({ "Table": describe(&key, table, "ACTIVE") }))
}

pub(crate) fn list_tables(
    d: &Inner,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let limit = input.get("Limit").and_then(Value::as_u64).unwrap_or(100) as usize;
    let start = s(input, "ExclusiveStartTableName");
    let st = d.state.lock();
    let names: Vec<&String> = st
        .tables
        .keys()
        .filter(|k| k.account == ctx.account && k.region == ctx.region)
        .map(|k| &k.name)
        .filter(|n| start.as_ref().is_none_or(|s| n.as_str() > s.as_str()))
        .collect();
    let page: Vec<&String> = names.iter().take(limit).copied().collect();
    let mut out = json!({ "TableNames": page });
    if names.len() > limit
        && let Some(last) = page.last()
    {
        out["LastEvaluatedTableName"] = json!(last);
    }
    Ok(out)
}

pub(crate) async fn update_table(
    d: &Inner,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = table_key(ctx, input);
    let now = d.clock.now_ms();
    let (commit, desc) = {
        let mut guard = d.state.lock();
        let st = &mut *guard;
        let table = st.tables.get_mut(&key).ok_or_else(not_found)?;
        let mut meta = table.meta.clone();
        let mut defs: BTreeMap<String, String> = meta
            .attribute_definitions
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                (
                    s(d, "AttributeName").unwrap_or_default(),
                    s(d, "AttributeType").unwrap_or_default(),
                )
            })
            .collect();
        let mut changed = false;
        if let Some(new_defs) = input.get("AttributeDefinitions").and_then(Value::as_array) {
            for def in new_defs {
                defs.insert(
                    s(def, "AttributeName").unwrap_or_default(),
                    s(def, "AttributeType").unwrap_or_default(),
                );
            }
        }
        if let Some(billing) = s(input, "BillingMode") {
            meta.billing_mode = billing;
            changed = true;
        }
        if input.get("ProvisionedThroughput").is_some() || input.get("BillingMode").is_some() {
            let (r, w) = throughput(input, &meta.billing_mode)?;
            meta.read_capacity = r;
            meta.write_capacity = w;
            changed = true;
        }
        if let Some(spec) = input.get("StreamSpecification") {
            let enable = spec.get("StreamEnabled").and_then(Value::as_bool) == Some(true);
            match (&meta.stream, enable) {
                (Some(s), true) if s.enabled => {
                    return Err(validation(format!(
                        "Table already has an enabled stream: TableName: {}",
                        key.name
                    )));
                }
                (None, false) => {
                    return Err(validation(format!(
                        "Table already has no stream enabled: TableName: {}",
                        key.name
                    )));
                }
                _ => {}
            }
            if enable {
                if let Some(old) = meta.stream.take() {
                    meta.old_streams.push(old);
                }
                meta.stream = stream_spec(spec, now)?;
                if let Some(stream) = meta.stream.as_mut() {
                    crate::streams::ensure_shard(stream, &table.records, &mut st.last_seq, now);
                }
            } else if let Some(mut old) = meta.stream.take() {
                old.enabled = false;
                crate::streams::close_all(&mut old, &table.records, now);
                meta.old_streams.push(old);
            }
            changed = true;
        }
        for update in input
            .get("GlobalSecondaryIndexUpdates")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(create) = update.get("Create") {
                let idx = index_meta(create, &defs, true)?;
                if meta.indexes.iter().any(|i| i.name == idx.name) {
                    return Err(validation(format!(
                        "Attempting to create an index which already exists: {}",
                        idx.name
                    )));
                }
                meta.indexes.push(idx);
            } else if let Some(del) = update.get("Delete") {
                let name = s(del, "IndexName").unwrap_or_default();
                let before = meta.indexes.len();
                meta.indexes.retain(|i| !(i.global && i.name == name));
                if meta.indexes.len() == before {
                    return Err(AwsError::new(
                        "ResourceNotFoundException",
                        400,
                        format!("Requested resource not found: Index: {name} not found"),
                    ));
                }
            } else if let Some(upd) = update.get("Update") {
                let name = s(upd, "IndexName").unwrap_or_default();
                let Some(idx) = meta.indexes.iter_mut().find(|i| i.global && i.name == name) else {
                    return Err(AwsError::new(
                        "ResourceNotFoundException",
                        400,
                        format!("Requested resource not found: Index: {name} not found"),
                    ));
                };
                if let Some(pt) = upd.get("ProvisionedThroughput") {
                    idx.raw["ProvisionedThroughput"] = pt.clone();
                }
            }
            changed = true;
        }
        meta.attribute_definitions = json!(
            defs.iter()
                .map(|(n, t)| json!({"AttributeName": n, "AttributeType": t}))
                .collect::<Vec<_>>()
        );
        if let Some(p) = input
            .get("DeletionProtectionEnabled")
            .and_then(Value::as_bool)
        {
            meta.deletion_protection = p;
            changed = true;
        }
        if let Some(sse) = input.get("SSESpecification") {
            meta.sse = Some(sse.clone());
            changed = true;
        }
        if let Some(c) = s(input, "TableClass") {
            meta.table_class = Some(c);
            changed = true;
        }
        if !changed {
            return Err(validation(
                "At least one of ProvisionedThroughput, BillingMode, UpdateStreamEnabled, GlobalSecondaryIndexUpdates or SSESpecification or ReplicaUpdates is required",
            ));
        }
        table.meta = meta;
        let mut batch = Batch::new();
        state::put_table(&mut batch, &key, &table.meta);
        (d.store.commit(batch), describe(&key, table, "ACTIVE"))
    };
    commit.await.map_err(store_error)?;
    Ok(json!({ "TableDescription": desc }))
}

pub(crate) async fn delete_table(
    d: &Inner,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = table_key(ctx, input);
    let (commit, desc) = {
        let mut st = d.state.lock();
        let table = st.tables.get(&key).ok_or_else(|| {
            AwsError::new(
                "ResourceNotFoundException",
                400,
                format!(
                    "Requested resource not found: Table: {} not found",
                    key.name
                ),
            )
        })?;
        if table.meta.deletion_protection {
            return Err(validation(
                "Resource cannot be deleted as it is currently protected against deletion. Disable deletion protection first.",
            ));
        }
        let desc = describe(&key, table, "DELETING");
        st.tables.remove(&key);
        let mut batch = Batch::new();
        state::delete_table(&mut batch, &key);
        (d.store.commit(batch), desc)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({ "TableDescription": desc }))
}

pub(crate) async fn update_ttl(
    d: &Inner,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = table_key(ctx, input);
    let spec = input
        .get("TimeToLiveSpecification")
        .cloned()
        .unwrap_or(json!({}));
    let enabled = spec
        .get("Enabled")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let attr = s(&spec, "AttributeName").unwrap_or_default();
    let commit = {
        let mut st = d.state.lock();
        let table = st.tables.get_mut(&key).ok_or_else(not_found)?;
        match (&table.meta.ttl_attribute, enabled) {
            (Some(_), true) => return Err(validation("TimeToLive is already enabled")),
            (None, false) => return Err(validation("TimeToLive is already disabled")),
            (Some(a), false) if *a != attr => {
                return Err(validation(
                    "TimeToLive is active on a different AttributeName: current AttributeName is "
                        .to_string()
                        + a,
                ));
            }
            _ => {}
        }
        table.meta.ttl_attribute = enabled.then(|| attr.clone());
        let mut batch = Batch::new();
        state::put_table(&mut batch, &key, &table.meta);
        d.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({ "TimeToLiveSpecification": {"Enabled": enabled, "AttributeName": attr} }))
}

pub(crate) fn describe_ttl(
    d: &Inner,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = table_key(ctx, input);
    let st = d.state.lock();
    let table = st.tables.get(&key).ok_or_else(not_found)?;
    Ok(match &table.meta.ttl_attribute {
        Some(a) => {
            json!({"TimeToLiveDescription": {"TimeToLiveStatus": "ENABLED", "AttributeName": a}})
        }
        None => json!({"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}}),
    })
}

fn arn_table(ctx: &RequestContext, input: &Value) -> Result<TableKey, AwsError> {
    let arn = s(input, "ResourceArn").unwrap_or_default();
    match tsumiki_core::ids::parse_arn(&arn) {
        Some((_, _, _, res)) if res.starts_with("table/") => Ok(crate::table_key_of(ctx, &arn)),
        _ => Err(validation(format!(
            "Invalid TableArn: Invalid ResourceArn provided as input {arn}"
        ))),
    }
}

pub(crate) async fn tag_resource(
    d: &Inner,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = arn_table(ctx, input)?;
    let commit = {
        let mut st = d.state.lock();
        let table = st.tables.get_mut(&key).ok_or_else(not_found)?;
        for t in input
            .get("Tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            table.meta.tags.insert(
                s(t, "Key").unwrap_or_default(),
                s(t, "Value").unwrap_or_default(),
            );
        }
        let mut batch = Batch::new();
        state::put_table(&mut batch, &key, &table.meta);
        d.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({}))
}

pub(crate) async fn untag_resource(
    d: &Inner,
    ctx: &RequestContext,
    input: &Value,
) -> Result<Value, AwsError> {
    let key = arn_table(ctx, input)?;
    let commit = {
        let mut st = d.state.lock();
        let table = st.tables.get_mut(&key).ok_or_else(not_found)?;
        for k in input
            .get("TagKeys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            table.meta.tags.remove(k.as_str().unwrap_or_default());
        }
        let mut batch = Batch::new();
        state::put_table(&mut batch, &key, &table.meta);
        d.store.commit(batch)
    };
    commit.await.map_err(store_error)?;
    Ok(json!({}))
}

pub(crate) fn list_tags(d: &Inner, ctx: &RequestContext, input: &Value) -> Result<Value, AwsError> {
    let key = arn_table(ctx, input)?;
    let st = d.state.lock();
    let table = st.tables.get(&key).ok_or_else(not_found)?;
    let tags: Vec<Value> = table
        .meta
        .tags
        .iter()
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect();
    Ok(json!({ "Tags": tags }))
}

/// AWS does not delete items whose TTL is more than five years in the past (it takes such
/// values for something other than an expiry).
const FIVE_YEARS_S: i64 = 5 * 365 * 24 * 3600;

/// Deletes expired items (with a stream record by the DynamoDB service principal) and stream
/// records past their 24 hours, once a second on the clock.
pub(crate) async fn sweeper(inner: Weak<Inner>) {
    loop {
        let Some(d) = inner.upgrade() else {
            return;
        };
        let clock = d.clock.clone();
        drop(d);
        clock.sleep_ms(SECOND_MS).await;
        let Some(d) = inner.upgrade() else {
            return;
        };
        let now = d.clock.now_ms();
        let now_s = now / 1000;
        let commit = {
            let mut guard = d.state.lock();
            let st = &mut *guard;
            let mut batch = Batch::new();
            let mut expired = Vec::new();
            for (key, table) in &st.tables {
                let Some(attr) = &table.meta.ttl_attribute else {
                    continue;
                };
                for (pk, part) in &table.items {
                    for (sk, item) in part {
                        if let Some(AttrValue::N(n)) = item.get(attr)
                            && let Ok(at) =
                                n.to_plain().split('.').next().unwrap_or("").parse::<i64>()
                            && at < now_s
                            && at > now_s - FIVE_YEARS_S
                        {
                            expired.push((key.clone(), pk.clone(), sk.clone()));
                        }
                    }
                }
            }
            for (key, pk, sk) in expired {
                crate::items::write(st, &key, &pk, &sk, None, &mut batch, now, true);
            }
            crate::streams::trim(st, &mut batch, now);
            (!batch.is_empty()).then(|| d.store.commit(batch))
        };
        if let Some(commit) = commit
            && let Err(e) = commit.await
        {
            tracing::error!(error = %e, "The DynamoDB TTL sweep could not write to the store.");
        }
    }
}
