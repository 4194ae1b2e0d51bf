//! tsumiki's own endpoints: health, clock control and reset. They are not AWS APIs, so they
//! live under `/_tsumiki/` (and `/moto-api/reset`, which moto's test suite calls).

use http::{Method, StatusCode};
use serde_json::json;

use crate::{Gateway, json_response};

pub async fn handle(
    gw: &Gateway,
    req: &tsumiki_protocol::Request<'_>,
) -> tsumiki_protocol::Response {
    let path = req.uri.path().trim_end_matches('/');
    match (req.method, path) {
        (&Method::GET, "/_tsumiki/health") | (&Method::HEAD, "/_tsumiki/health") => {
            let services: serde_json::Map<String, serde_json::Value> = gw
                .served()
                .iter()
                .map(|s| (s.service.name().to_string(), json!("running")))
                .collect();
            json_response(
                StatusCode::OK,
                json!({
                    "status": "running",
                    "version": env!("CARGO_PKG_VERSION"),
                    "services": services,
                    "clock": if gw.clock().is_manual() { "manual" } else { "real" },
                }),
            )
        }
        (&Method::GET, "/_tsumiki/clock") => clock_now(gw),
        (&Method::POST, "/_tsumiki/clock/advance") => advance(gw, req.body),
        (&Method::POST, "/_tsumiki/reset") | (&Method::POST, "/moto-api/reset") => {
            for s in gw.served() {
                if let Err(e) = s.service.reset().await {
                    tracing::error!(service = s.service.name(), error = %e, "Reset failed.");
                    return json_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({"error": e.message}),
                    );
                }
            }
            for e in &gw.endpoints {
                if let Err(err) = e.reset().await {
                    tracing::error!(endpoint = e.name(), error = %err, "Reset failed.");
                    return json_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({"error": err.message}),
                    );
                }
            }
            tracing::info!("All state was reset.");
            json_response(StatusCode::OK, json!({"status": "reset"}))
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            json!({"error": format!("No tsumiki endpoint {} {}.", req.method, req.uri.path())}),
        ),
    }
}

fn clock_now(gw: &Gateway) -> tsumiki_protocol::Response {
    let now = gw.clock().now_ms();
    json_response(
        StatusCode::OK,
        json!({
            "now_ms": now,
            "now": tsumiki_core::clock::iso8601_ms(now),
            "mode": if gw.clock().is_manual() { "manual" } else { "real" },
        }),
    )
}

fn advance(gw: &Gateway, body: &[u8]) -> tsumiki_protocol::Response {
    if !gw.clock().is_manual() {
        return json_response(
            StatusCode::CONFLICT,
            json!({"error": "The clock is real; start tsumiki with --clock manual to advance it."}),
        );
    }
    let seconds = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("seconds").and_then(serde_json::Value::as_f64));
    let Some(seconds) = seconds.filter(|s| s.is_finite() && *s >= 0.0) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "Expected a JSON body {\"seconds\": N} with N >= 0."}),
        );
    };
    if gw
        .clock()
        .advance_ms((seconds * 1000.0).round() as i64)
        .is_err()
    {
        return json_response(
            StatusCode::CONFLICT,
            json!({"error": "The clock is not manual."}),
        );
    }
    clock_now(gw)
}
