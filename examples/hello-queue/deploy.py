#!/usr/bin/env python3
"""The example app: an order queue with a dead-letter queue, deployed with plain boto3.

    python3 examples/hello-queue/deploy.py [ENDPOINT]

Creates `orders` (redrive to `orders-dlq` after 3 receives) and `orders.fifo`, sends a few
orders, and prints what a worker would see. The same script runs unchanged against AWS.
"""
import json
import sys

import boto3

endpoint = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:4566"
sqs = boto3.client(
    "sqs",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="test",
    aws_secret_access_key="test",
)

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

for n in range(1, 4):
    order = {"order": n, "item": ["tea", "rice", "miso"][n - 1]}
    sqs.send_message(
        QueueUrl=orders_url,
        MessageBody=json.dumps(order),
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "order"}},
    )
    sqs.send_message(QueueUrl=fifo_url, MessageBody=json.dumps(order), MessageGroupId="customer-1")

print("Deployed the example app:")
for url in (orders_url, dlq_url, fifo_url):
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    print(f"  {url}  ({attrs['ApproximateNumberOfMessages']} messages)")
print("Try:")
print(f"  aws --endpoint-url {endpoint} --region us-east-1 sqs receive-message --queue-url {orders_url} --max-number-of-messages 10")
