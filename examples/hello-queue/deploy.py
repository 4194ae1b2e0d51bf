#!/usr/bin/env python3
"""The example app: an order queue with a dead-letter queue and a Lambda worker, deployed with
plain boto3.

    python3 examples/hello-queue/deploy.py [ENDPOINT]

Creates `orders` (redrive to `orders-dlq` after 3 receives) and `orders.fifo`, a python
function `order-worker` fed by `orders` through an event source mapping, sends a few orders,
and prints what the worker logged. The same script runs unchanged against AWS (given a real
IAM role ARN).
"""
import io
import json
import sys
import time
import zipfile

import boto3

endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:4566"
sqs = boto3.client(
    "sqs",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="test",
    aws_secret_access_key="test",
)

WORKER = b"""
import json
def handler(event, context):
    for record in event["Records"]:
        order = json.loads(record["body"])
        print(f"processed order {order['order']}: {order['item']}")
    return {"batchItemFailures": []}
"""

dlq_url = sqs.create_queue(QueueName="orders-dlq")["QueueUrl"]
dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
orders_url = sqs.create_queue(
    QueueName="orders",
    Attributes={
        "VisibilityTimeout": "30",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"}),
    },
)["QueueUrl"]
fifo_url = sqs.create_queue(
    QueueName="orders.fifo",
    Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
)["QueueUrl"]

client_args = dict(
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="test",
    aws_secret_access_key="test",
)
lam = boto3.client("lambda", **client_args)
logs = boto3.client("logs", **client_args)
package = io.BytesIO()
with zipfile.ZipFile(package, "w") as z:
    z.writestr("worker.py", WORKER)
try:
    lam.create_function(
        FunctionName="order-worker",
        Runtime="python3.12",
        Role="arn:aws:iam::000000000000:role/order-worker",
        Handler="worker.handler",
        Code={"ZipFile": package.getvalue()},
    )
    lam.get_waiter("function_active_v2").wait(FunctionName="order-worker")
    orders_arn = sqs.get_queue_attributes(QueueUrl=orders_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    lam.create_event_source_mapping(
        FunctionName="order-worker",
        EventSourceArn=orders_arn,
        BatchSize=10,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
except lam.exceptions.ResourceConflictException:
    pass  # deployed before

for n in range(1, 4):
    order = {"order": n, "item": ["tea", "rice", "miso"][n - 1]}
    sqs.send_message(
        QueueUrl=orders_url,
        MessageBody=json.dumps(order),
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "order"}},
    )
    sqs.send_message(QueueUrl=fifo_url, MessageBody=json.dumps(order), MessageGroupId="customer-1")

lines = []
for _ in range(100):
    try:
        events = logs.filter_log_events(logGroupName="/aws/lambda/order-worker", filterPattern="processed")["events"]
        lines = [e["message"] for e in events]
    except logs.exceptions.ResourceNotFoundException:
        pass
    if len(lines) >= 3:
        break
    time.sleep(0.1)

print("Deployed the example app:")
for url in (orders_url, dlq_url, fifo_url):
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    print(f"  {url}  ({attrs['ApproximateNumberOfMessages']} messages)")
print("The order-worker function logged:")
for line in lines:
    print(f"  {line}")
print("Try:")
print("  tsumiki logs -f order-worker")
print(f"  aws --endpoint-url {endpoint} --region us-east-1 sqs receive-message --queue-url {fifo_url} --max-number-of-messages 10")
