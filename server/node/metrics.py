"""Prometheus metrics of one node, in a registry of its own (tests run several nodes)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge("hemicycle_connections", "Open WebSocket connections", registry=r)
        self.entries = Counter("hemicycle_log_entries", "Room log entries folded", registry=r)
        self.deliveries = Counter(
            "hemicycle_deliveries", "Event frames handed to connections", registry=r
        )
        self.commands = Counter(
            "hemicycle_commands", "Commands by outcome", ["outcome"], registry=r
        )
        self.queue_drops = Counter(
            "hemicycle_queue_drops",
            "Outbound frames dropped for slow consumers",
            ["kind"],
            registry=r,
        )
        self.slow_closes = Counter(
            "hemicycle_slow_consumer_closes",
            "Connections closed because their queue overflowed",
            registry=r,
        )
        self.bad_frames = Counter(
            "hemicycle_bad_frames", "Client frames refused", ["code"], registry=r
        )

        # audio (media.py)
        self.audio_in = Counter(
            "hemicycle_audio_packets_in",
            "Microphone RTP packets by outcome (forwarded or why dropped)",
            ["outcome"],
            registry=r,
        )
        self.audio_out = Counter(
            "hemicycle_audio_packets_out", "Opus packets handed to listener tracks", registry=r
        )
        self.audio_listener_drops = Counter(
            "hemicycle_audio_listener_drops",
            "Packets not sent to a listener (its connection not up yet, or gone)",
            registry=r,
        )
        self.audio_bus = Counter(
            "hemicycle_audio_bus_frames",
            "Audio frames published to or taken from the bus",
            ["direction"],
            registry=r,
        )
        self.audio_bus_lost = Counter(
            "hemicycle_audio_bus_lost",
            "Audio frames missing on the bus (sequence gaps)",
            registry=r,
        )
        self.audio_bus_reordered = Counter(
            "hemicycle_audio_bus_reordered",
            "Audio frames that came late or twice over the bus (dropped)",
            registry=r,
        )
        # video (media/video.py)
        self.video_in = Counter(
            "hemicycle_video_packets_in",
            "Camera and screen RTP packets by outcome (forwarded or why dropped)",
            ["outcome"],
            registry=r,
        )
        self.video_out = Counter(
            "hemicycle_video_packets_out", "Video packets handed to viewer tracks", registry=r
        )
        self.video_keyframes = Counter(
            "hemicycle_video_keyframe_requests",
            "Keyframe requests: sent to a publisher, merged into another, sent over the bus",
            ["outcome"],
            registry=r,
        )
        self.video_bus = Counter(
            "hemicycle_video_bus_frames",
            "Video packets published to or taken from the bus",
            ["direction"],
            registry=r,
        )
        self.video_bus_lost = Counter(
            "hemicycle_video_bus_lost",
            "Video packets missing on the bus (sequence gaps)",
            registry=r,
        )
        self.video_bus_reordered = Counter(
            "hemicycle_video_bus_reordered",
            "Video packets that came late or twice over the bus (dropped)",
            registry=r,
        )
        self.peer_connections = Gauge(
            "hemicycle_peer_connections", "Open WebRTC peer connections", ["kind"], registry=r
        )
        self.rtc_offers = Counter(
            "hemicycle_rtc_offers", "WebRTC offers by outcome", ["outcome"], registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
