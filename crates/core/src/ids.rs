//! Ids and ARNs.

/// A request id in AWS's usual UUID form.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `arn:aws:{service}:{region}:{account}:{resource}`.
pub fn arn(service: &str, region: &str, account: &str, resource: &str) -> String {
    format!("arn:aws:{service}:{region}:{account}:{resource}")
}

/// Splits an ARN into (service, region, account, resource).
pub fn parse_arn(arn: &str) -> Option<(&str, &str, &str, &str)> {
    let mut parts = arn.splitn(6, ':');
    if parts.next()? != "arn" {
        return None;
    }
    let _partition = parts.next()?;
    let service = parts.next()?;
    let region = parts.next()?;
    let account = parts.next()?;
    let resource = parts.next()?;
    Some((service, region, account, resource))
}

/// A 12-digit access key id names its account; anything else belongs to the default account.
pub fn account_from_access_key(access_key: &str, default_account: &str) -> String {
    if access_key.len() == 12 && access_key.bytes().all(|b| b.is_ascii_digit()) {
        access_key.to_string()
    } else {
        default_account.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arn_round_trip() {
        let a = arn("sqs", "us-east-1", "000000000000", "q1");
        assert_eq!(
            parse_arn(&a),
            Some(("sqs", "us-east-1", "000000000000", "q1"))
        );
        assert_eq!(parse_arn("nope"), None);
    }

    #[test]
    fn account_from_key() {
        assert_eq!(
            account_from_access_key("123456789012", "000000000000"),
            "123456789012"
        );
        assert_eq!(
            account_from_access_key("AKIAIOSFODNN7EXAMPLE", "000000000000"),
            "000000000000"
        );
        assert_eq!(account_from_access_key("12345678901a", "1"), "1");
    }
}
