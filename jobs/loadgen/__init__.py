"""Seeded API-call traffic with ground truth: benign archetypes and distillation attacks.

Used live by the demo (through Kafka), offline by the evaluation (JSONL) and by tests.
"""

from jobs.loadgen.archetypes import ARCHETYPES, ATTACKS, BENIGN, NEW_MODEL, Archetype
from jobs.loadgen.population import Label
from jobs.loadgen.render import GeneratedEvent
from jobs.loadgen.scenario import (
    DEFAULT_MIX,
    ScenarioConfig,
    generate,
    generate_batches,
    labels,
    run,
    write_labels,
)
from jobs.loadgen.sink import KafkaDeliveryError, KafkaUnavailableError, produce_kafka, write_jsonl

__all__ = [
    "ARCHETYPES",
    "ATTACKS",
    "BENIGN",
    "DEFAULT_MIX",
    "NEW_MODEL",
    "Archetype",
    "GeneratedEvent",
    "KafkaDeliveryError",
    "KafkaUnavailableError",
    "Label",
    "ScenarioConfig",
    "generate",
    "generate_batches",
    "labels",
    "produce_kafka",
    "run",
    "write_jsonl",
    "write_labels",
]
