//! DynamoDB through the AWS SDK for Rust: tables, items with conditions and updates, Query
//! paging on a global secondary index, and a cancelled transaction's typed reasons.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue as Av, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, Put, ReturnValue, ScalarAttributeType, TransactWriteItem,
    Update,
};
use tsumiki_testkit::Server;

use crate::in_memory;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn client(server: &Server) -> Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&server.endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "e2e"))
        .build();
    Client::from_conf(config)
}

fn attr(name: &str, ty: ScalarAttributeType) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ty)
        .build()
        .expect("attribute")
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .expect("key")
}

async fn create(c: &Client, name: &str) {
    c.create_table()
        .table_name(name)
        .attribute_definitions(attr("pk", ScalarAttributeType::S))
        .attribute_definitions(attr("sk", ScalarAttributeType::N))
        .attribute_definitions(attr("color", ScalarAttributeType::S))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("byColor")
                .key_schema(key("color", KeyType::Hash))
                .key_schema(key("sk", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .expect("gsi"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table");
}

#[test]
fn items_conditions_updates_and_gsi_paging() {
    let server = in_memory();
    rt().block_on(async {
        let c = client(&server);
        create(&c, "things").await;
        let listed = c.list_tables().send().await.expect("list");
        assert_eq!(listed.table_names(), ["things"]);
        for i in 0..12 {
            c.put_item()
                .table_name("things")
                .item("pk", Av::S(format!("p{}", i % 3)))
                .item("sk", Av::N(i.to_string()))
                .item("color", Av::S(if i % 2 == 0 { "red" } else { "blue" }.into()))
                .send()
                .await
                .expect("put");
        }
        let err = c
            .put_item()
            .table_name("things")
            .item("pk", Av::S("p0".into()))
            .item("sk", Av::N("0".into()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .expect_err("exists");
        assert_eq!(err.code(), Some("ConditionalCheckFailedException"));
        // With the old item asked for, AWS's body carries `Message` beside the `Item`.
        let err = c
            .put_item()
            .table_name("things")
            .item("pk", Av::S("p0".into()))
            .item("sk", Av::N("0".into()))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .await
            .expect_err("exists")
            .into_service_error();
        assert_eq!(err.message(), Some("The conditional request failed"));
        let aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(
            failed,
        ) = err
        else {
            panic!("not a condition failure: {err:?}");
        };
        assert_eq!(
            failed.item().and_then(|i| i.get("pk")),
            Some(&Av::S("p0".into()))
        );
        // PartiQL over the same item.
        let out = c
            .execute_statement()
            .statement("SELECT pk FROM \"things\" WHERE pk = ? AND sk = 0")
            .parameters(Av::S("p0".into()))
            .send()
            .await
            .expect("select");
        assert_eq!(out.items().len(), 1);
        assert_eq!(out.items()[0].get("pk"), Some(&Av::S("p0".into())));
        let out = c
            .update_item()
            .table_name("things")
            .key("pk", Av::S("p0".into()))
            .key("sk", Av::N("0".into()))
            .update_expression("SET hits = if_not_exists(hits, :zero) + :one")
            .expression_attribute_values(":zero", Av::N("0".into()))
            .expression_attribute_values(":one", Av::N("1".into()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .expect("update");
        assert_eq!(out.attributes().and_then(|a| a.get("hits")), Some(&Av::N("1".into())));
        let err = c
            .update_item()
            .table_name("things")
            .key("pk", Av::S("p0".into()))
            .key("sk", Av::N("0".into()))
            .update_expression("SET a = :v REMOVE a")
            .expression_attribute_values(":v", Av::N("1".into()))
            .send()
            .await
            .expect_err("overlap");
        assert_eq!(err.code(), Some("ValidationException"));
        assert_eq!(
            err.message(),
            Some("Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [a], path two: [a]")
        );
        // Page through the red items on the index, two at a time, in sort key order.
        let mut seen = Vec::new();
        let mut start = None;
        loop {
            let out = c
                .query()
                .table_name("things")
                .index_name("byColor")
                .key_condition_expression("color = :c")
                .expression_attribute_values(":c", Av::S("red".into()))
                .limit(2)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("query");
            for item in out.items() {
                if let Some(Av::N(n)) = item.get("sk") {
                    seen.push(n.parse::<i32>().expect("number"));
                }
            }
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
        assert_eq!(seen, vec![0, 2, 4, 6, 8, 10]);
    });
}

#[test]
fn cancelled_transaction_reports_reasons() {
    let server = in_memory();
    rt().block_on(async {
        let c = client(&server);
        create(&c, "ledger").await;
        c.put_item()
            .table_name("ledger")
            .item("pk", Av::S("a".into()))
            .item("sk", Av::N("1".into()))
            .item("bal", Av::N("5".into()))
            .send()
            .await
            .expect("put");
        let err = c
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name("ledger")
                            .key("pk", Av::S("a".into()))
                            .key("sk", Av::N("1".into()))
                            .update_expression("SET bal = bal - :x")
                            .condition_expression("bal >= :x")
                            .expression_attribute_values(":x", Av::N("10".into()))
                            .build()
                            .expect("update"),
                    )
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name("ledger")
                            .item("pk", Av::S("b".into()))
                            .item("sk", Av::N("1".into()))
                            .build()
                            .expect("put"),
                    )
                    .build(),
            )
            .send()
            .await
            .expect_err("cancelled");
        let TransactWriteItemsError::TransactionCanceledException(e) = err.into_service_error()
        else {
            panic!("not a TransactionCanceledException");
        };
        let codes: Vec<_> = e
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().unwrap_or_default().to_string())
            .collect();
        assert_eq!(codes, ["ConditionalCheckFailed", "None"]);
        let got = c
            .get_item()
            .table_name("ledger")
            .key("pk", Av::S("b".into()))
            .key("sk", Av::N("1".into()))
            .send()
            .await
            .expect("get");
        assert!(
            got.item().is_none(),
            "nothing of a cancelled transaction is applied"
        );
    });
}
