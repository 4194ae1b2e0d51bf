//! The Distributed Map hook: the state runs as one host task (`asl::DISTRIBUTED_MAP`) whose
//! answer is the map's result, with MapRunStarted/MapRunSucceeded/MapRunFailed in history and
//! Catch as for any state; and `render_template` for the host's ItemSelector.

use serde_json::{Value, json};
use tsumiki_lang::asl::{self, Command, Execution, Input, StartSpec, Status};

fn definition(extra: Value) -> asl::Definition {
    let mut map = json!({"Type": "Map", "ItemProcessor": {
        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
        "StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}},
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
                       "Parameters": {"Bucket.$": "$.bucket", "Key": "items.json"}},
        "ResultPath": "$.out", "End": true});
    let catches = extra.get("Catch").is_some();
    if let (Some(m), Some(e)) = (map.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    let mut states = json!({"M": map});
    if catches {
        states["Caught"] = json!({"Type": "Pass", "End": true});
    }
    asl::parse(&json!({"StartAt": "M", "States": states}).to_string()).unwrap()
}

fn start(def: &asl::Definition) -> (Execution, u64, Value) {
    let mut exec = Execution::new(StartSpec {
        execution_arn: "arn:aws:states:us-east-1:123456789012:execution:sm:ex".into(),
        name: "ex".into(),
        state_machine_arn: "arn:aws:states:us-east-1:123456789012:stateMachine:sm".into(),
        state_machine_name: "sm".into(),
        role_arn: "arn:aws:iam::123456789012:role/r".into(),
        region: "us-east-1".into(),
        input: json!({"bucket": "b"}),
        start_ms: 1_000,
        token_prefix: "tok-".into(),
        seed: 7,
    });
    let fx = exec.step(def, Input::Start, 1_000);
    let (task, input) = fx
        .commands
        .iter()
        .find_map(|c| match c {
            Command::RunTask {
                task,
                resource,
                input,
                ..
            } if resource == asl::DISTRIBUTED_MAP => Some((*task, input.clone())),
            _ => None,
        })
        .expect("the map runs as a host task");
    (exec, task, input)
}

#[test]
fn a_distributed_map_is_one_host_task() {
    let def = definition(json!({}));
    let (mut exec, task, input) = start(&def);
    assert_eq!(input["Input"], json!({"bucket": "b"}));
    assert_eq!(
        input["State"]["ItemReader"]["ReaderConfig"],
        json!({"InputType": "JSON"})
    );
    assert_eq!(input["Context"]["Execution"]["Name"], "ex");
    let reader = asl::render_template(
        &input["State"]["ItemReader"]["Parameters"],
        &input["Input"],
        &input["Context"],
        "M",
    )
    .unwrap();
    assert_eq!(reader, json!({"Bucket": "b", "Key": "items.json"}));

    let fx = exec.step(
        &def,
        Input::TaskSubmitted {
            task,
            output: json!({"mapRunArn": "arn:run"}),
        },
        2_000,
    );
    assert_eq!(fx.events[0].kind, "MapRunStarted");
    assert_eq!(fx.events[0].details, json!({"mapRunArn": "arn:run"}));
    let fx = exec.step(
        &def,
        Input::TaskSucceeded {
            task,
            output: json!([1, 2]),
        },
        3_000,
    );
    let kinds: Vec<&str> = fx.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["MapRunSucceeded", "MapStateExited", "ExecutionSucceeded"]
    );
    assert_eq!(exec.status, Status::Succeeded);
    assert_eq!(exec.output, Some(json!({"bucket": "b", "out": [1, 2]})));
}

#[test]
fn a_failed_map_run_is_caught() {
    let def = definition(
        json!({"Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught", "ResultPath": "$.err"}]}),
    );
    let (mut exec, task, _) = start(&def);
    let fx = exec.step(
        &def,
        Input::TaskFailed {
            task,
            error: "States.ExceedToleratedFailureThreshold".into(),
            cause: "too many".into(),
        },
        2_000,
    );
    assert_eq!(fx.events[0].kind, "MapRunFailed");
    assert_eq!(
        fx.events[0].details_key.as_deref(),
        Some("mapRunFailedEventDetails")
    );
    assert_eq!(exec.status, Status::Succeeded);
    assert_eq!(
        exec.output.unwrap()["err"]["Error"],
        "States.ExceedToleratedFailureThreshold"
    );
}

#[test]
fn item_reader_outside_a_distributed_map_is_refused() {
    let bad = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemReader": {"Resource": "arn:aws:states:::s3:getObject"},
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}, "End": true}}});
    let Err(err) = asl::parse(&bad.to_string()) else {
        panic!("refused")
    };
    assert!(asl::invalid_definition_message(&err).contains("only allowed in a Distributed Map"));
}

#[test]
fn render_template_sees_the_context_object() {
    let ctx = json!({"Map": {"Item": {"Index": 3, "Value": {"k": "v"}}}});
    let out = asl::render_template(&json!({"i.$": "$$.Map.Item.Index", "v.$": "$$.Map.Item.Value.k", "x.$": "$.x", "f.$": "States.Format('{}!', $.x)"}), &json!({"x": "y"}), &ctx, "M").unwrap();
    assert_eq!(out, json!({"i": 3, "v": "v", "x": "y", "f": "y!"}));
}

#[test]
fn a_redriven_map_run_is_reported_as_such() {
    let def = definition(json!({}));
    let (mut exec, task, _) = start(&def);
    let run = "arn:aws:states:us-east-1:123456789012:mapRun:sm/M:x";
    let fx = exec.step(
        &def,
        Input::TaskSubmitted {
            task,
            output: json!({"mapRunArn": run, "redriveCount": 2}),
        },
        2_000,
    );
    assert_eq!(fx.events[0].kind, "MapRunRedriven");
    assert_eq!(
        fx.events[0].details_key.as_deref(),
        Some("mapRunRedrivenEventDetails")
    );
    assert_eq!(
        fx.events[0].details,
        json!({"mapRunArn": run, "redriveCount": 2})
    );
}

#[test]
fn reader_and_writer_configs_take_aws_values() {
    let parse = |extra: Value| {
        let mut map = json!({"Type": "Map", "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED"},
            "StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}, "End": true});
        if let (Some(m), Some(e)) = (map.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        asl::parse(&json!({"StartAt": "M", "States": {"M": map}}).to_string())
            .err()
            .map(|e| asl::invalid_definition_message(&e))
    };
    let reader = |cfg: Value| {
        json!({"ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": cfg,
                              "Parameters": {"Bucket": "b", "Key": "k"}}})
    };
    for ok in [
        json!({"InputType": "CSV", "CSVDelimiter": "TAB", "CSVHeaderLocation": "GIVEN", "CSVHeaders": ["a"]}),
        json!({"InputType": "MANIFEST"}),
        json!({"InputType": "JSONL", "ManifestType": "ATHENA_DATA"}),
        json!({"InputType": "JSON", "Transformation": "LOAD_AND_FLATTEN", "MaxItems": 3}),
    ] {
        assert_eq!(parse(reader(ok.clone())), None, "{ok}");
    }
    for (bad, field) in [
        (json!({"InputType": "XML"}), "InputType"),
        (json!({"CSVDelimiter": "COLON"}), "CSVDelimiter"),
        (
            json!({"CSVHeaderLocation": "LAST_ROW"}),
            "CSVHeaderLocation",
        ),
        (json!({"ManifestType": "HIVE"}), "ManifestType"),
        (json!({"Transformation": "UNZIP"}), "Transformation"),
    ] {
        let msg = parse(reader(bad)).expect("refused");
        assert!(
            msg.contains(&format!("The value for the field '{field}' must be one of")),
            "{msg}"
        );
    }
    let writer = |w: Value| json!({"ResultWriter": w});
    assert_eq!(
        parse(writer(
            json!({"WriterConfig": {"OutputType": "JSONL", "Transformation": "FLATTEN"}})
        )),
        None
    );
    assert_eq!(
        parse(writer(
            json!({"Resource": "arn:aws:states:::s3:putObject", "Parameters": {"Bucket": "b"}})
        )),
        None
    );
    assert!(
        parse(writer(json!({"WriterConfig": {"OutputType": "CSV"}})))
            .unwrap()
            .contains("'OutputType'")
    );
    assert!(
        parse(writer(
            json!({"WriterConfig": {"Transformation": "SQUASH"}})
        ))
        .unwrap()
        .contains("'Transformation'")
    );
    assert!(
        parse(writer(json!({})))
            .unwrap()
            .contains("needs a Resource, a WriterConfig")
    );
}
