"""Independent Kafka reader for tests/e2e/kafka.rs (kafka-python, no consumer group).

Usage: kafka_read.py BROKER TOPIC COUNT TIMEOUT_S
Reads every partition of TOPIC from the beginning until COUNT messages arrived or
TIMEOUT_S passed, and prints each message value as one JSON string per line.
"""
import json
import sys
import time

from kafka import KafkaConsumer, TopicPartition


def main():
    broker, topic, count, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    deadline = time.monotonic() + timeout
    consumer = KafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
    parts = None
    while not parts and time.monotonic() < deadline:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            time.sleep(0.2)
    if not parts:
        return
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    seen = 0
    while seen < count and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=200).values():
            for r in records:
                print(json.dumps(r.value.decode("utf-8", "replace")), flush=True)
                seen += 1
    consumer.close()


if __name__ == "__main__":
    main()
