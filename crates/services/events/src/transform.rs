//! What a target receives: the event itself, a constant `Input`, the part of the event at an
//! `InputPath`, or an `InputTransformer`'s template filled from the event.
//!
//! Template quoting follows AWS's documented examples: in a JSON template (one that starts
//! with `{`, `[` or `"`), a placeholder outside a string literal is replaced by the value as
//! JSON (a string gains quotes), and inside a string literal by the string's characters,
//! escaped for JSON; in a plain-text template every value goes in raw (strings without
//! quotes). A path that finds nothing is `null` outside quotes and empty inside them.
//! `<aws.events.event>` and `<aws.events.event.json>` are inserted unescaped, as AWS says.

use std::collections::BTreeMap;

use serde_json::Value;

/// Facts about the rule and event the predefined variables name.
pub struct Context<'a> {
    pub rule_arn: &'a str,
    pub rule_name: &'a str,
    pub ingestion_time: &'a str,
}

/// How a target's input is built, as PutTargets stored it.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum InputSpec {
    #[default]
    Event,
    Constant(String),
    Path(String),
    Template {
        paths: BTreeMap<String, String>,
        template: String,
    },
}

impl InputSpec {
    /// Reads a target's `Input`, `InputPath` and `InputTransformer` members.
    pub fn from_target(target: &Value) -> InputSpec {
        if let Some(input) = target.get("Input").and_then(Value::as_str) {
            return InputSpec::Constant(input.to_string());
        }
        if let Some(path) = target.get("InputPath").and_then(Value::as_str) {
            return InputSpec::Path(path.to_string());
        }
        if let Some(t) = target.get("InputTransformer") {
            let paths = t
                .get("InputPathsMap")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            let template = t
                .get("InputTemplate")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            return InputSpec::Template { paths, template };
        }
        InputSpec::Event
    }

    /// The text the target receives for `event`.
    pub fn render(&self, event: &Value, ctx: &Context<'_>) -> String {
        match self {
            InputSpec::Event => event.to_string(),
            InputSpec::Constant(text) => text.clone(),
            InputSpec::Path(path) => select(event, path).unwrap_or(Value::Null).to_string(),
            InputSpec::Template { paths, template } => fill(template, paths, event, ctx),
        }
    }
}

/// Why a transformer is refused at PutTargets.
pub fn validate_paths(paths: &BTreeMap<String, String>) -> Result<(), String> {
    if paths.len() > 100 {
        return Err("InputPathsMap can have at most 100 entries.".into());
    }
    for (name, path) in paths {
        if name.starts_with("aws.") {
            return Err(format!(
                "Input path map key {name} is reserved; keys may not start with 'aws.'."
            ));
        }
        if parse_path(path).is_none() {
            return Err(format!("Input path {path} is not a valid JSON path."));
        }
    }
    Ok(())
}

fn fill(
    template: &str,
    paths: &BTreeMap<String, String>,
    event: &Value,
    ctx: &Context<'_>,
) -> String {
    let json_template = matches!(template.trim_start().chars().next(), Some('{' | '[' | '"'));
    let mut out = String::with_capacity(template.len() + 64);
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if c == '<'
            && !escaped
            && let Some(end) = rest.find('>')
            && let Some(replacement) = variable(&rest[1..end], paths, event, ctx)
        {
            match replacement {
                Replacement::Raw(text) => out.push_str(&text),
                Replacement::Value(v) => {
                    if !json_template {
                        match v {
                            Some(Value::String(s)) => out.push_str(&s),
                            Some(other) => out.push_str(&other.to_string()),
                            None => {}
                        }
                    } else if in_string {
                        let text = match v {
                            Some(Value::String(s)) => s,
                            Some(other) => other.to_string(),
                            None => String::new(),
                        };
                        let quoted = Value::String(text).to_string();
                        out.push_str(&quoted[1..quoted.len() - 1]);
                    } else {
                        out.push_str(&v.unwrap_or(Value::Null).to_string());
                    }
                }
            }
            rest = &rest[end + 1..];
            continue;
        }
        if json_template {
            if escaped {
                escaped = false;
            } else if c == '\\' && in_string {
                escaped = true;
            } else if c == '"' {
                in_string = !in_string;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

enum Replacement {
    /// Inserted as is, never quoted or escaped.
    Raw(String),
    /// A value placed by the quoting rules; `None` when its path found nothing.
    Value(Option<Value>),
}

fn variable(
    name: &str,
    paths: &BTreeMap<String, String>,
    event: &Value,
    ctx: &Context<'_>,
) -> Option<Replacement> {
    match name {
        "aws.events.rule-arn" => Some(Replacement::Value(Some(Value::String(
            ctx.rule_arn.to_string(),
        )))),
        "aws.events.rule-name" => Some(Replacement::Value(Some(Value::String(
            ctx.rule_name.to_string(),
        )))),
        "aws.events.event.ingestion-time" => Some(Replacement::Value(Some(Value::String(
            ctx.ingestion_time.to_string(),
        )))),
        "aws.events.event" => {
            let mut without = event.clone();
            if let Value::Object(m) = &mut without {
                m.remove("detail");
            }
            Some(Replacement::Raw(without.to_string()))
        }
        "aws.events.event.json" => Some(Replacement::Raw(event.to_string())),
        _ => {
            let path = paths.get(name)?;
            Some(Replacement::Value(select(event, path)))
        }
    }
}

#[derive(Debug, PartialEq)]
enum Step {
    Member(String),
    Index(usize),
    Wildcard,
}

/// EventBridge's JSONPath subset: `$`, `.name`, `['name']`, `[n]`, `[*]` and `.*`.
fn parse_path(path: &str) -> Option<Vec<Step>> {
    let mut rest = path.strip_prefix('$')?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix(".*") {
            steps.push(Step::Wildcard);
            rest = r;
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return None;
            }
            steps.push(Step::Member(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            if inner == "*" {
                steps.push(Step::Wildcard);
            } else if let Some(name) = inner
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
            {
                steps.push(Step::Member(name.to_string()));
            } else {
                steps.push(Step::Index(inner.parse().ok()?));
            }
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(steps)
}

/// The value at `path`; a path with a wildcard gathers every match into an array.
pub fn select(event: &Value, path: &str) -> Option<Value> {
    let steps = parse_path(path)?;
    let wild = steps.contains(&Step::Wildcard);
    let mut found = Vec::new();
    walk(event, &steps, &mut found);
    if wild {
        Some(Value::Array(found.into_iter().cloned().collect()))
    } else {
        found.first().map(|v| (*v).clone())
    }
}

fn walk<'a>(value: &'a Value, steps: &[Step], found: &mut Vec<&'a Value>) {
    let Some((step, rest)) = steps.split_first() else {
        found.push(value);
        return;
    };
    match (step, value) {
        (Step::Member(name), Value::Object(m)) => {
            if let Some(v) = m.get(name) {
                walk(v, rest, found);
            }
        }
        (Step::Index(i), Value::Array(a)) => {
            if let Some(v) = a.get(*i) {
                walk(v, rest, found);
            }
        }
        (Step::Wildcard, Value::Array(a)) => a.iter().for_each(|v| walk(v, rest, found)),
        (Step::Wildcard, Value::Object(m)) => m.values().for_each(|v| walk(v, rest, found)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event() -> Value {
        json!({
            "version": "0",
            "id": "7bf73129-1428-4cd3-a780-95db273d1602",
            "detail-type": "EC2 Instance State-change Notification",
            "source": "aws.ec2",
            "account": "123456789012",
            "time": "2015-11-11T21:29:54Z",
            "region": "us-east-1",
            "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
            "detail": {"instance-id": "i-0123456789", "state": "RUNNING", "count": 3,
                       "tags": [{"k": "a"}, {"k": "b"}], "quote": "say \"hi\""}
        })
    }

    fn render(paths: &[(&str, &str)], template: &str) -> String {
        let spec = InputSpec::Template {
            paths: paths
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            template: template.into(),
        };
        spec.render(
            &event(),
            &Context {
                rule_arn: "arn:aws:events:us-east-1:123456789012:rule/r1",
                rule_name: "r1",
                ingestion_time: "2015-11-11T21:29:55Z",
            },
        )
    }

    #[test]
    fn templates_follow_aws_quoting_rules() {
        let p = &[
            ("instance", "$.detail.instance-id"),
            ("state", "$.detail.state"),
        ];
        let table: &[(&str, &str)] = &[
            // Plain text: values raw.
            (
                "<instance> is in state <state>",
                "i-0123456789 is in state RUNNING",
            ),
            // A JSON string: values inside the quotes.
            (
                "\"<instance> is in state <state>\"",
                "\"i-0123456789 is in state RUNNING\"",
            ),
            // Unquoted in a JSON object: strings gain quotes.
            (
                "{\"instance\" : <instance>, \"state\": <state>}",
                "{\"instance\" : \"i-0123456789\", \"state\": \"RUNNING\"}",
            ),
            // Quoted in a JSON object: strings placed inside the quotes.
            (
                "{\"instance\" : \"<instance>\", \"state\": \"<state>\"}",
                "{\"instance\" : \"i-0123456789\", \"state\": \"RUNNING\"}",
            ),
            (
                "{\"msg\": \"Instance <instance> is <state>.\"}",
                "{\"msg\": \"Instance i-0123456789 is RUNNING.\"}",
            ),
            // Unknown placeholders stay as they are.
            ("<b>bold</b> <instance>", "<b>bold</b> i-0123456789"),
        ];
        for (template, want) in table {
            assert_eq!(render(p, template), *want, "template {template}");
        }
    }

    #[test]
    fn non_string_values_missing_paths_and_escaping() {
        let p = &[
            ("count", "$.detail.count"),
            ("tags", "$.detail.tags"),
            ("missing", "$.detail.nope"),
            ("quote", "$.detail.quote"),
            ("keys", "$.detail.tags[*].k"),
            ("first", "$.detail.tags[0].k"),
        ];
        assert_eq!(
            render(p, "{\"n\": <count>, \"t\": <tags>, \"m\": <missing>}"),
            "{\"n\": 3, \"t\": [{\"k\":\"a\"},{\"k\":\"b\"}], \"m\": null}"
        );
        assert_eq!(render(p, "{\"m\": \"<missing>\"}"), "{\"m\": \"\"}");
        assert_eq!(
            render(p, "{\"q\": \"<quote>\"}"),
            "{\"q\": \"say \\\"hi\\\"\"}"
        );
        assert_eq!(render(p, "{\"q\": <quote>}"), "{\"q\": \"say \\\"hi\\\"\"}");
        assert_eq!(
            render(p, "{\"k\": <keys>, \"f\": <first>}"),
            "{\"k\": [\"a\",\"b\"], \"f\": \"a\"}"
        );
        assert_eq!(render(p, "count=<count>"), "count=3");
    }

    #[test]
    fn predefined_variables() {
        let out = render(
            &[],
            "{\"arn\": <aws.events.rule-arn>, \"name\": \"<aws.events.rule-name>\", \"at\": <aws.events.event.ingestion-time>, \"e\": <aws.events.event>, \"j\": <aws.events.event.json>}",
        );
        let v: Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(v["arn"], "arn:aws:events:us-east-1:123456789012:rule/r1");
        assert_eq!(v["name"], "r1");
        assert_eq!(v["at"], "2015-11-11T21:29:55Z");
        assert_eq!(v["e"]["source"], "aws.ec2");
        assert!(v["e"].get("detail").is_none());
        assert_eq!(v["j"], event());
    }

    #[test]
    fn input_path_and_constant_input() {
        let ctx = Context {
            rule_arn: "a",
            rule_name: "r",
            ingestion_time: "t",
        };
        let path = InputSpec::from_target(&json!({"InputPath": "$.detail.state"}));
        assert_eq!(path.render(&event(), &ctx), "\"RUNNING\"");
        let whole = InputSpec::from_target(&json!({"InputPath": "$.detail"}));
        assert_eq!(
            serde_json::from_str::<Value>(&whole.render(&event(), &ctx)).expect("json"),
            event()["detail"]
        );
        let constant = InputSpec::from_target(&json!({"Input": "{\"a\":1}"}));
        assert_eq!(constant.render(&event(), &ctx), "{\"a\":1}");
        assert_eq!(InputSpec::from_target(&json!({})), InputSpec::Event);
    }

    #[test]
    fn path_validation() {
        let ok: BTreeMap<String, String> =
            [("a".to_string(), "$.detail['x'][0].*".to_string())].into();
        assert!(validate_paths(&ok).is_ok());
        let reserved: BTreeMap<String, String> =
            [("aws.events.rule-arn".to_string(), "$.x".to_string())].into();
        assert!(validate_paths(&reserved).is_err());
        let bad: BTreeMap<String, String> = [("a".to_string(), "detail.x".to_string())].into();
        assert!(validate_paths(&bad).is_err());
    }
}
