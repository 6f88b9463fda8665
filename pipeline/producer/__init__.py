"""Producer-side helpers for gateways: the batch encoder and a batching Kafka producer."""
