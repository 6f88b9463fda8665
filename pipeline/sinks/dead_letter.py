"""Dead-letter producer: rejected messages go to ``api-calls-dlq`` unchanged, reason in headers."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from pipeline.decode.rejects import Rejected


class DeadLetterSink:
    def __init__(self, bootstrap_servers: list[str], topic: str) -> None:
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        self._producer: AIOKafkaProducer | None = None
        self.sent = 0

    async def start(self) -> None:
        # Created here: aiokafka binds to the running event loop.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers, client_id="distillwatch-dlq", acks="all",
            max_request_size=16 << 20,
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("DeadLetterSink used before start()")
        return self._producer

    async def send(self, rejects: Sequence[Rejected]) -> None:
        """Produce every reject and wait until the broker has them all (before any commit)."""
        futures = [
            await self.producer.send(self.topic, value=r.value, key=r.key, headers=r.headers())
            for r in rejects
        ]
        for fut in futures:
            await fut
        self.sent += len(futures)
