//! EventBridge's and Scheduler's state: buses with their rules (and each bus's compiled
//! matcher), schedule groups and schedules, each rule's and schedule's last fired occurrence,
//! and deliveries waiting for a retry. Everything lives in memory behind one lock and is
//! written through to the store; the only module that names the `events.*` and `scheduler.*`
//! namespaces.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tsumiki_lang::event_pattern::{Matcher, Pattern};
use tsumiki_store::{Batch, Store, StoreError};

const NS_BUS: &str = "events.bus";
const NS_RULE: &str = "events.rule";
const NS_FIRED: &str = "events.fired";
const NS_RETRY: &str = "events.retry";
const NS_GROUP: &str = "scheduler.group";
const NS_SCHEDULE: &str = "scheduler.schedule";
const NS_SCHEDULE_FIRED: &str = "scheduler.fired";
const ALL_NS: &[&str] = &[
    NS_BUS,
    NS_RULE,
    NS_FIRED,
    NS_RETRY,
    NS_GROUP,
    NS_SCHEDULE,
    NS_SCHEDULE_FIRED,
];

/// A resource's place: resources are isolated per account and region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Scope {
    pub account: String,
    pub region: String,
}

impl Scope {
    pub fn arn(&self, service: &str, resource: &str) -> String {
        tsumiki_core::ids::arn(service, &self.region, &self.account, resource)
    }
}

/// A bus's configuration as stored (rules are stored on their own).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BusRecord {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub created_ms: i64,
    pub modified_ms: i64,
    /// Permission statements by `Sid`.
    #[serde(default)]
    pub statements: BTreeMap<String, Value>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A rule as stored, targets included.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    pub bus: String,
    #[serde(default)]
    pub event_pattern: Option<String>,
    #[serde(default)]
    pub schedule: Option<String>,
    pub state: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub role_arn: Option<String>,
    /// When the schedule was set or the rule last enabled: where a rate counts from.
    pub anchor_ms: i64,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Targets as PutTargets gave them, by Id.
    #[serde(default)]
    pub targets: BTreeMap<String, Value>,
}

impl Rule {
    pub fn enabled(&self) -> bool {
        self.state != "DISABLED"
    }

    pub fn arn(&self, scope: &Scope) -> String {
        if self.bus == "default" {
            scope.arn("events", &format!("rule/{}", self.name))
        } else {
            scope.arn("events", &format!("rule/{}/{}", self.bus, self.name))
        }
    }
}

/// An event bus in memory.
pub struct Bus {
    pub record: BusRecord,
    /// Whether the record is in the store (the default bus exists before anything is stored).
    pub persisted: bool,
    pub rules: BTreeMap<String, Arc<Rule>>,
    /// Every enabled rule with a pattern, by name.
    pub matcher: Matcher<String>,
}

impl Bus {
    pub fn new(name: &str, now: i64) -> Bus {
        Bus {
            record: BusRecord {
                name: name.to_string(),
                description: None,
                created_ms: now,
                modified_ms: now,
                statements: BTreeMap::new(),
                tags: BTreeMap::new(),
            },
            persisted: false,
            rules: BTreeMap::new(),
            matcher: Matcher::new(),
        }
    }

    /// Puts a rule in place and keeps the matcher in step with it.
    pub fn set_rule(&mut self, rule: Arc<Rule>) {
        let pattern = rule
            .event_pattern
            .as_deref()
            .filter(|_| rule.enabled())
            .and_then(|p| Pattern::parse(p).ok());
        match pattern {
            Some(p) => self.matcher.add(rule.name.clone(), &p),
            None => {
                self.matcher.remove(&rule.name);
            }
        }
        self.rules.insert(rule.name.clone(), rule);
    }

    pub fn remove_rule(&mut self, name: &str) -> Option<Arc<Rule>> {
        self.matcher.remove(&name.to_string());
        self.rules.remove(name)
    }
}

/// A schedule group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub created_ms: i64,
    pub modified_ms: i64,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A Scheduler schedule as stored: its definition as CreateSchedule/UpdateSchedule gave it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleRecord {
    pub name: String,
    pub group: String,
    /// The request's members (ScheduleExpression, Target, State, ...), dates as epoch seconds.
    pub definition: Value,
    pub created_ms: i64,
    pub modified_ms: i64,
}

/// A delivery that failed and waits for its next attempt (or, for a schedule firing, one
/// recorded before its first attempt so a crash cannot lose it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub scope: Scope,
    /// The rule's or schedule's ARN.
    pub origin_arn: String,
    /// Whether the origin is a Scheduler schedule (its DLQ attributes differ).
    #[serde(default)]
    pub from_scheduler: bool,
    pub target_arn: String,
    pub payload: String,
    #[serde(default)]
    pub message_group_id: Option<String>,
    /// For a Kinesis target: `KinesisParameters.PartitionKeyPath` read from the event, else
    /// the event id (AWS's default).
    #[serde(default)]
    pub partition_key: Option<String>,
    /// For a Scheduler target that is an event bus: the entry's Source and DetailType.
    #[serde(default)]
    pub put_events: Option<(String, String)>,
    #[serde(default)]
    pub dlq_arn: Option<String>,
    /// For an ECS cluster target: its `EcsParameters`, and whether the payload is the
    /// target's Input (RunTask's overrides) rather than the event.
    #[serde(default)]
    pub ecs: Option<(Value, bool)>,
    pub max_retries: u32,
    pub max_age_ms: i64,
    pub first_ms: i64,
    pub attempts: u32,
    pub next_ms: i64,
    #[serde(default)]
    pub last_error: Option<(String, String)>,
    /// The event's id and time (log streams are named after the event).
    #[serde(default)]
    pub event_id: String,
    #[serde(default)]
    pub event_time_ms: i64,
}

/// Everything, behind one lock: the control plane is small and changes rarely, and PutEvents
/// only reads (matching runs under the read lock, on each bus's compiled matcher).
#[derive(Default)]
pub struct Inner {
    pub buses: HashMap<(Scope, String), Bus>,
    /// Each schedule rule's last fired occurrence (ms), by (scope, rule name).
    pub rule_fired: HashMap<(Scope, String), i64>,
    pub groups: HashMap<(Scope, String), Group>,
    pub schedules: BTreeMap<(Scope, String, String), ScheduleRecord>,
    pub schedule_fired: HashMap<(Scope, String, String), i64>,
    pub retries: BTreeMap<String, Delivery>,
}

pub struct State {
    pub store: Store,
    pub inner: RwLock<Inner>,
}

fn scope_key(scope: &Scope, rest: &[&str]) -> Vec<u8> {
    let mut k = format!("{}/{}", scope.account, scope.region);
    for r in rest {
        k.push('/');
        k.push_str(r);
    }
    k.into_bytes()
}

fn split_key(key: &[u8], n: usize) -> Option<(Scope, Vec<String>)> {
    let text = std::str::from_utf8(key).ok()?;
    let parts: Vec<&str> = text.splitn(2 + n, '/').collect();
    if parts.len() != 2 + n {
        return None;
    }
    Some((
        Scope {
            account: parts[0].to_string(),
            region: parts[1].to_string(),
        },
        parts[2..].iter().map(|s| s.to_string()).collect(),
    ))
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("state records serialise")
}

/// The store writes that record changes, so callers never name a namespace.
pub mod writes {
    use super::*;

    pub fn bus(batch: &mut Batch, scope: &Scope, bus: &BusRecord) {
        batch.put(NS_BUS, scope_key(scope, &[&bus.name]), json(bus));
    }

    pub fn delete_bus(batch: &mut Batch, scope: &Scope, name: &str) {
        batch.delete(NS_BUS, scope_key(scope, &[name]));
        let mut prefix = scope_key(scope, &[name]);
        prefix.push(b'/');
        batch.delete_prefix(NS_RULE, prefix);
    }

    pub fn rule(batch: &mut Batch, scope: &Scope, rule: &Rule) {
        batch.put(
            NS_RULE,
            scope_key(scope, &[&rule.bus, &rule.name]),
            json(rule),
        );
    }

    pub fn delete_rule(batch: &mut Batch, scope: &Scope, bus: &str, name: &str) {
        batch.delete(NS_RULE, scope_key(scope, &[bus, name]));
        batch.delete(NS_FIRED, scope_key(scope, &[name]));
    }

    pub fn rule_fired(batch: &mut Batch, scope: &Scope, name: &str, at_ms: i64) {
        batch.put(NS_FIRED, scope_key(scope, &[name]), at_ms.to_string());
    }

    pub fn retry(batch: &mut Batch, d: &Delivery) {
        batch.put(NS_RETRY, d.id.clone(), json(d));
    }

    pub fn delete_retry(batch: &mut Batch, id: &str) {
        batch.delete(NS_RETRY, id.to_string());
    }

    pub fn group(batch: &mut Batch, scope: &Scope, g: &Group) {
        batch.put(NS_GROUP, scope_key(scope, &[&g.name]), json(g));
    }

    pub fn delete_group(batch: &mut Batch, scope: &Scope, name: &str) {
        batch.delete(NS_GROUP, scope_key(scope, &[name]));
        let mut prefix = scope_key(scope, &[name]);
        prefix.push(b'/');
        batch.delete_prefix(NS_SCHEDULE, prefix.clone());
        batch.delete_prefix(NS_SCHEDULE_FIRED, prefix);
    }

    pub fn schedule(batch: &mut Batch, scope: &Scope, s: &ScheduleRecord) {
        batch.put(NS_SCHEDULE, scope_key(scope, &[&s.group, &s.name]), json(s));
    }

    pub fn delete_schedule(batch: &mut Batch, scope: &Scope, group: &str, name: &str) {
        batch.delete(NS_SCHEDULE, scope_key(scope, &[group, name]));
        batch.delete(NS_SCHEDULE_FIRED, scope_key(scope, &[group, name]));
    }

    pub fn forget_schedule_fired(batch: &mut Batch, scope: &Scope, group: &str, name: &str) {
        batch.delete(NS_SCHEDULE_FIRED, scope_key(scope, &[group, name]));
    }

    pub fn schedule_fired(batch: &mut Batch, scope: &Scope, group: &str, name: &str, at: i64) {
        batch.put(
            NS_SCHEDULE_FIRED,
            scope_key(scope, &[group, name]),
            at.to_string(),
        );
    }
}

impl State {
    pub fn new(store: Store) -> State {
        State {
            store,
            inner: RwLock::new(Inner::default()),
        }
    }

    /// Loads everything; returns (buses, rules, schedules, pending deliveries).
    pub async fn load(&self) -> Result<(usize, usize, usize, usize), StoreError> {
        let mut inner = Inner::default();
        for (k, v) in self.store.scan(NS_BUS).await? {
            let (Some((scope, _)), Ok(record)) =
                (split_key(&k, 1), serde_json::from_slice::<BusRecord>(&v))
            else {
                continue;
            };
            let mut bus = Bus::new(&record.name, record.created_ms);
            bus.record = record;
            bus.persisted = true;
            inner.buses.insert((scope, bus.record.name.clone()), bus);
        }
        let mut rules = 0;
        for (k, v) in self.store.scan(NS_RULE).await? {
            let (Some((scope, _)), Ok(rule)) =
                (split_key(&k, 2), serde_json::from_slice::<Rule>(&v))
            else {
                continue;
            };
            let bus = inner
                .buses
                .entry((scope, rule.bus.clone()))
                .or_insert_with(|| Bus::new(&rule.bus, rule.anchor_ms));
            bus.set_rule(Arc::new(rule));
            rules += 1;
        }
        for (k, v) in self.store.scan(NS_FIRED).await? {
            if let (Some((scope, rest)), Some(at)) = (split_key(&k, 1), parse_ms(&v)) {
                inner.rule_fired.insert((scope, rest[0].clone()), at);
            }
        }
        for (k, v) in self.store.scan(NS_GROUP).await? {
            if let (Some((scope, _)), Ok(g)) =
                (split_key(&k, 1), serde_json::from_slice::<Group>(&v))
            {
                inner.groups.insert((scope, g.name.clone()), g);
            }
        }
        for (k, v) in self.store.scan(NS_SCHEDULE).await? {
            if let (Some((scope, _)), Ok(s)) = (
                split_key(&k, 2),
                serde_json::from_slice::<ScheduleRecord>(&v),
            ) {
                inner
                    .schedules
                    .insert((scope, s.group.clone(), s.name.clone()), s);
            }
        }
        for (k, v) in self.store.scan(NS_SCHEDULE_FIRED).await? {
            if let (Some((scope, rest)), Some(at)) = (split_key(&k, 2), parse_ms(&v)) {
                inner
                    .schedule_fired
                    .insert((scope, rest[0].clone(), rest[1].clone()), at);
            }
        }
        for (_, v) in self.store.scan(NS_RETRY).await? {
            if let Ok(d) = serde_json::from_slice::<Delivery>(&v) {
                inner.retries.insert(d.id.clone(), d);
            }
        }
        let counts = (
            inner.buses.len(),
            rules,
            inner.schedules.len(),
            inner.retries.len(),
        );
        *self.inner.write() = inner;
        Ok(counts)
    }

    pub async fn reset(&self) -> Result<(), StoreError> {
        let commit = {
            let mut inner = self.inner.write();
            *inner = Inner::default();
            let mut batch = Batch::new();
            for ns in ALL_NS {
                batch.delete_prefix(ns, Vec::new());
            }
            self.store.commit(batch)
        };
        commit.await
    }
}

fn parse_ms(v: &[u8]) -> Option<i64> {
    std::str::from_utf8(v).ok()?.parse().ok()
}
