"""Prometheus metrics of one node, in a registry of its own (tests run several nodes)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge("hemicycle_connections", "Open WebSocket connections",
                                 registry=r)
        self.entries = Counter("hemicycle_log_entries", "Room log entries folded", registry=r)
        self.deliveries = Counter("hemicycle_deliveries",
                                  "Event frames handed to connections", registry=r)
        self.commands = Counter("hemicycle_commands", "Commands by outcome",
                                ["outcome"], registry=r)
        self.queue_drops = Counter("hemicycle_queue_drops",
                                   "Outbound frames dropped for slow consumers", ["kind"],
                                   registry=r)
        self.slow_closes = Counter("hemicycle_slow_consumer_closes",
                                   "Connections closed because their queue overflowed",
                                   registry=r)
        self.bad_frames = Counter("hemicycle_bad_frames", "Client frames refused", ["code"],
                                  registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
