//! AWS STS, as far as local tools need it: `GetCallerIdentity` (Terraform, the CDK and
//! moto's suite ask it first), `AssumeRole` and `GetSessionToken`.
//!
//! Credentials are not verified anywhere yet, so STS keeps no state: it answers who the
//! caller is from the request's account, and hands out credentials that select an account
//! under tsumiki's rule (a 12-digit access key id is that account). What it does not: IAM
//! policies, federation, SAML or web identity (those operations answer NotImplemented).

use async_trait::async_trait;
use serde_json::{Value, json};
use tsumiki_core::{AwsError, Clock, RequestContext};

/// The STS model this service implements (botocore's, docs stripped).
pub const MODEL_JSON: &str = include_str!("../../../../models/sts.json");

/// Default and bounds of `DurationSeconds` for AssumeRole and GetSessionToken.
const DEFAULT_DURATION_SECONDS: i64 = 3600;

pub struct Sts {
    clock: std::sync::Arc<Clock>,
}

impl Sts {
    pub fn new(clock: std::sync::Arc<Clock>) -> Sts {
        Sts { clock }
    }

    fn credentials(&self, account: &str, duration: i64) -> Value {
        let secret: String = (0..40).map(|_| alphanumeric()).collect();
        let token: String = (0..120).map(|_| alphanumeric()).collect();
        json!({
            // A 12-digit access key id selects its account in tsumiki.
            "AccessKeyId": account,
            "SecretAccessKey": secret,
            "SessionToken": token,
            "Expiration": (self.clock.now_ms() / 1000 + duration) as f64,
        })
    }
}

fn alphanumeric() -> char {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    CHARS[rand::Rng::gen_range(&mut rand::thread_rng(), 0..CHARS.len())] as char
}

fn unique_id(prefix: &str) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let tail: String = (0..17)
        .map(|_| CHARS[rand::Rng::gen_range(&mut rand::thread_rng(), 0..CHARS.len())] as char)
        .collect();
    format!("{prefix}{tail}")
}

#[async_trait]
impl tsumiki_ports::Service for Sts {
    fn name(&self) -> &'static str {
        "sts"
    }

    async fn call(
        &self,
        ctx: &RequestContext,
        operation: &str,
        input: Value,
    ) -> Result<Value, AwsError> {
        match operation {
            "GetCallerIdentity" => Ok(json!({
                "UserId": ctx.access_key.clone().unwrap_or_else(|| ctx.account.clone()),
                "Account": ctx.account,
                "Arn": format!("arn:aws:iam::{}:root", ctx.account),
            })),
            "AssumeRole" => assume_role(self, &input),
            "GetSessionToken" => {
                let duration = input
                    .get("DurationSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(43_200);
                Ok(json!({"Credentials": self.credentials(&ctx.account, duration)}))
            }
            other => Err(AwsError::not_implemented("STS", other)),
        }
    }

    async fn reset(&self) -> Result<(), AwsError> {
        Ok(())
    }
}

fn assume_role(sts: &Sts, input: &Value) -> Result<Value, AwsError> {
    let role_arn = input
        .get("RoleArn")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let session = input
        .get("RoleSessionName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (_, _, account, resource) = tsumiki_core::ids::parse_arn(role_arn)
        .filter(|(service, _, account, resource)| {
            *service == "iam" && account.len() == 12 && resource.starts_with("role/")
        })
        .ok_or_else(|| AwsError::validation(format!("{role_arn} is invalid")))?;
    let role_name = resource.rsplit('/').next().unwrap_or(resource);
    let duration = input
        .get("DurationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_DURATION_SECONDS);
    let role_id = unique_id("AROA");
    Ok(json!({
        "Credentials": sts.credentials(account, duration),
        "AssumedRoleUser": {
            "AssumedRoleId": format!("{role_id}:{session}"),
            "Arn": format!("arn:aws:sts::{account}:assumed-role/{role_name}/{session}"),
        },
        "PackedPolicySize": 0,
    }))
}
