"""TURN credentials (server/media/turn.py): the config, and ``rtc.ice`` over a real socket.

That coturn accepts these credentials (and refuses a wrong secret) is shown end to end with
a real turnserver and Chromium in tests/test_reach_turn.py.
"""

from __future__ import annotations

import base64
import dataclasses
import time
from typing import Any

import pytest

from server.client import Client
from server.errors import ConfigError
from server.media.setup import MediaConfig
from server.media.turn import DEFAULT_TTL, TurnConfig
from server.node.config import Settings

URLS = ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:443?transport=tcp"]
SECRET = "a-secret-shared-with-coturn-0123"


def media(turn: Any, env: str = "") -> MediaConfig:
    return MediaConfig.from_extra({"media": {"turn": turn}}, "a.toml", env)


def test_credentials_are_per_person_and_expire_after_the_ttl() -> None:
    config = media({"urls": URLS, "secret": SECRET, "ttl": 3600}).turn
    assert config is not None
    a = config.credentials("p1", now=1_000_000)
    b = config.credentials("p2", now=1_000_000)
    assert a["urls"] == URLS
    assert a["username"] == "1003600:p1" and b["username"] == "1003600:p2"
    assert a["credential"] != b["credential"]
    assert len(base64.b64decode(a["credential"])) == 20  # an HMAC-SHA1
    later = config.credentials("p1", now=1_000_001)
    assert later["username"] == "1003601:p1" and later["credential"] != a["credential"]
    other = dataclasses.replace(config, secret=SECRET + "x").credentials("p1", now=1_000_000)
    assert other["username"] == a["username"] and other["credential"] != a["credential"]


def test_the_environment_secret_overrides_the_file() -> None:
    env = "from-the-environment-0123456789"
    turn = media({"urls": URLS, "secret": SECRET}, env).turn
    assert turn is not None and turn.secret == env
    turn = media({"urls": URLS}, env).turn
    assert turn is not None and turn.secret == env and turn.ttl == DEFAULT_TTL
    assert Settings.from_env({"HEMICYCLE_TURN_SECRET": env, "HEMICYCLE_SECRET": "x" * 40})


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("turn:x", "media.turn"),
        ({"urls": URLS}, "media.turn.secret"),
        ({"urls": URLS, "secret": "short"}, "media.turn.secret"),
        ({"urls": ["stun:x:3478"], "secret": SECRET}, "media.turn.urls"),
        ({"urls": [], "secret": SECRET}, "media.turn.urls"),
        ({"urls": URLS, "secret": SECRET, "ttl": 9}, "media.turn.ttl"),
        ({"urls": URLS, "secret": SECRET, "ttl": True}, "media.turn.ttl"),
        ({"urls": URLS, "secret": SECRET, "password": "x"}, "media.turn"),
    ],
)
def test_a_bad_turn_table_names_its_key(table: Any, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        media(table)
    assert err.value.key == key and err.value.source == "a.toml", str(err.value)


def test_no_turn_table_no_turn() -> None:
    assert MediaConfig.from_extra({}, "a.toml").turn is None
    assert TurnConfig.from_table(None, "a.toml") is None


async def test_rtc_ice_hands_each_person_fresh_credentials(start_node, invites, assembly) -> None:  # type: ignore[no-untyped-def]
    stun = [{"urls": ["stun:stun.example.org:3478"]}]
    extra = {"media": {"ice_servers": stun, "turn": {"urls": URLS, "secret": SECRET}}}
    node = await start_node(config=dataclasses.replace(assembly, extra=extra))
    ana = await Client.connect(node.url, invites.mint(room="plenary", role="participant", name="A"))
    bob = await Client.connect(node.url, invites.mint(room="plenary", role="observer", name="B"))
    try:
        assert ana.welcome["assembly"]["media"] == {"ice_servers": stun, "turn": True}
        replies = [await c.rpc("rtc.ice") for c in (ana, bob)]
        for client, reply in zip((ana, bob), replies, strict=True):
            assert reply["ok"] and reply["turn"] is True
            first, relay = reply["ice_servers"]
            assert first == stun[0] and relay["urls"] == URLS
            expiry, pid = relay["username"].split(":", 1)
            assert pid == client.me
            assert abs(int(expiry) - (time.time() + DEFAULT_TTL)) < 60
        assert (
            replies[0]["ice_servers"][1]["credential"] != replies[1]["ice_servers"][1]["credential"]
        )
    finally:
        await ana.close()
        await bob.close()


async def test_rtc_ice_without_turn_gives_the_configured_servers_only(start_node, invites) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    ana = await Client.connect(node.url, invites.mint(room="plenary", role="participant", name="A"))
    try:
        reply = await ana.rpc("rtc.ice")
        assert reply["ok"] and reply["ice_servers"] == [] and reply["turn"] is False
    finally:
        await ana.close()
