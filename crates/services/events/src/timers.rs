//! The one loop that follows the clock: it fires scheduled rules and Scheduler schedules
//! when their occurrences come due, and runs the retries whose back-off has passed. It sleeps
//! on `Clock::sleep_until` until the earliest of those, or until a change pokes it, so
//! advancing a manual clock fires what became due.
//!
//! Exactly once per occurrence, across restarts: a firing commits the occurrence as the
//! rule's (or schedule's) last fired one together with a record of each delivery it causes,
//! in one batch, before the first attempt. A crash before that commit leaves the occurrence
//! due, so it fires after the restart; a crash after it leaves delivery records that the
//! restart resumes, and the occurrence is never fired again. (A crash in the instant between
//! a target's own commit and the record's removal repeats that one delivery: at least once,
//! as AWS promises.)
//!
//! Catch-up: when several occurrences came due while nothing ran (the server was down, or a
//! manual clock jumped), they coalesce into one firing, for the latest of them, as a cron
//! daemon's persistent timers do. Occurrences missed while a rule was disabled never fire.

use std::sync::{Arc, Weak};

use chrono_tz::Tz;
use serde_json::json;
use tsumiki_store::Batch;

use crate::put::{Envelope, EventFields};
use crate::schedule::{Flavor, Schedule, iso_seconds};
use crate::state::{Rule, Scope, writes};
use crate::transform::{Context, InputSpec};
use crate::{Events, store_error};

/// How long the loop sleeps when nothing is scheduled (a change pokes it earlier).
const IDLE_MS: i64 = 3_600_000;

pub(crate) async fn run(weak: Weak<Events>) {
    loop {
        let Some(ev) = weak.upgrade() else {
            return;
        };
        let now = ev.clock.now_ms();
        ev.fire_rules(now).await;
        ev.fire_schedules(now).await;
        ev.run_due_retries(now).await;
        let next = [ev.next_rule_ms(), ev.next_schedule_ms(), ev.next_retry_ms()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(now + IDLE_MS);
        tokio::select! {
            _ = ev.clock.sleep_until(next) => {}
            _ = ev.wake.notified() => {}
        }
    }
}

/// A rule's schedule with where its occurrences are counted from.
fn rule_schedule(ev_fired: Option<i64>, rule: &Rule) -> Option<(Schedule, i64)> {
    if !rule.enabled() {
        return None;
    }
    let schedule = Schedule::parse(rule.schedule.as_deref()?, Flavor::Rule)?;
    Some((schedule, ev_fired.unwrap_or(rule.anchor_ms)))
}

impl Events {
    fn scheduled_rules(&self) -> Vec<(Scope, Arc<Rule>, Schedule, i64)> {
        let inner = self.state.inner.read();
        let mut out = Vec::new();
        for ((scope, name), bus) in &inner.buses {
            if name != "default" {
                continue;
            }
            for rule in bus.rules.values().filter(|r| r.schedule.is_some()) {
                let fired = inner
                    .rule_fired
                    .get(&(scope.clone(), rule.name.clone()))
                    .copied();
                if let Some((schedule, cursor)) = rule_schedule(fired, rule) {
                    out.push((scope.clone(), rule.clone(), schedule, cursor));
                }
            }
        }
        out
    }

    fn next_rule_ms(&self) -> Option<i64> {
        self.scheduled_rules()
            .iter()
            .filter_map(|(_, rule, schedule, cursor)| {
                schedule.next_after(*cursor, rule.anchor_ms, Tz::UTC)
            })
            .min()
    }

    /// Fires every scheduled rule with an occurrence due, as AWS's `Scheduled Event`.
    async fn fire_rules(&self, now: i64) {
        for (scope, rule, schedule, cursor) in self.scheduled_rules() {
            let Some(occurrence) = schedule.latest_due(cursor, now, rule.anchor_ms, Tz::UTC) else {
                continue;
            };
            let arn = rule.arn(&scope);
            let envelope = Envelope::new(
                &scope,
                EventFields {
                    detail_type: "Scheduled Event",
                    source: "aws.events",
                    time_ms: occurrence,
                    resources: vec![arn.clone()],
                    detail: json!({}),
                },
            );
            let ingestion = iso_seconds(now);
            let deliveries: Vec<_> = rule
                .targets
                .values()
                .map(|target| {
                    let spec = InputSpec::from_target(target);
                    let payload = if spec == InputSpec::Event {
                        envelope.text.clone()
                    } else {
                        spec.render(
                            &envelope.value,
                            &Context {
                                rule_arn: &arn,
                                rule_name: &rule.name,
                                ingestion_time: &ingestion,
                            },
                        )
                    };
                    self.delivery(&scope, &arn, false, target, payload, &envelope, now)
                })
                .collect();
            let commit = {
                let mut inner = self.state.inner.write();
                let mut batch = Batch::new();
                writes::rule_fired(&mut batch, &scope, &rule.name, occurrence);
                Events::record_deliveries(&mut batch, &deliveries);
                inner
                    .rule_fired
                    .insert((scope.clone(), rule.name.clone()), occurrence);
                self.state.store.commit(batch)
            };
            if let Err(e) = commit.await {
                store_error(e);
                continue;
            }
            tracing::debug!(rule = %arn, time = %iso_seconds(occurrence), "A scheduled rule fired.");
            self.dispatch(deliveries, true).await;
        }
    }
}
