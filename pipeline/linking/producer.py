"""The detect step's own producer for the linking topics (observations, account updates).

Not Faust's producer: the detect step's linking messages are a few large messages
per batch, acknowledged before the batch's offsets are committed; they get their own
batching and request size here.
"""

from __future__ import annotations

from collections.abc import Awaitable

from aiokafka import AIOKafkaProducer


class LinkProducer:
    def __init__(self, bootstrap_servers: list[str]) -> None:
        self.bootstrap_servers = bootstrap_servers
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, client_id="distillwatch-linking",
                                          acks="all", linger_ms=5, max_request_size=4 << 20)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send(self, topic: str, partition: int, value: bytes) -> Awaitable[object]:
        """Queue one message; returns the future of its acknowledgement (LinkPublisher's SendFn)."""
        if self._producer is None:
            raise RuntimeError("LinkProducer.send before start")
        return await self._producer.send(topic, value, partition=partition)
