"""Settings and the assembly file: a bad file fails at start naming the file, key and problem."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from server import polls
from server.errors import ConfigError
from server.node.config import DEFAULT_CONFIG, Settings, load_assembly, parse_assembly

from .conftest import SECRET

GOOD = """
[assembly]
name = "A"
languages = ["es"]
[[members]]
id = "m1"
name = "M"
country = "KH"
[[rooms]]
id = "plenary"
[[rooms.agenda]]
title = "Opening"
start = "2026-12-03T12:00:00Z"
minutes = 20
"""


def test_the_demo_config_loads() -> None:
    a = load_assembly(DEFAULT_CONFIG)
    assert a.floor == "en" and a.languages == ("es", "fr", "ru")
    assert set(a.rooms) >= {"plenary", "panel"}
    assert a.rooms["plenary"].channels == ("es", "fr", "ru")
    assert a.rooms["plenary"].agenda[0].start.endswith("Z")
    assert a.rooms["plenary"].titles["es"] == "Plenario"  # shown in the page's language
    assert len(a.members) >= 8 and all(m.weight == 1.0 for m in a.members)


def test_member_weights_are_decimals_in_the_file_and_hundredths_on_the_roll() -> None:

    a = parse_assembly(
        tomllib.loads(GOOD.replace('country = "KH"', 'country = "KH"\nweight = 1.25'))
    )
    assert a.members[0].weight == 1.25
    roll = polls.init(a.rooms["plenary"])["roll"]
    assert roll == {"m1": {"name": "M", "country": "KH", "w": 125}}


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        (
            ('start = "2026-12-03T12:00:00Z"', 'start = "3 Dec, noon"'),
            "rooms[0].agenda[0].start",
            "not an ISO 8601 UTC time",
        ),
        (("minutes = 20", 'minutes = "twenty"'), "rooms[0].agenda[0].minutes", "expected int"),
        (('languages = ["es"]', 'languages = ["es", "es"]'), "assembly.languages", "twice"),
        (
            ('languages = ["es"]', 'languages = ["Spanish"]'),
            "assembly.languages",
            "not a language code",
        ),
        (('country = "KH"', 'country = "Cambodia"'), "members[0].country", "ISO 3166"),
        (('country = "KH"', 'country = "KH"\nweight = 0'), "members[0].weight", "positive"),
        (('country = "KH"', 'country = "KH"\nweight = 1.255'), "members[0].weight", "two decimals"),
        (('id = "plenary"', 'id = "Plenary Hall"'), "rooms[0].id", "lower-case"),
        (('name = "A"\n', ""), "assembly.name", "missing"),
        (
            ('id = "plenary"', 'id = "plenary"\ntitles = "Plenario"'),
            "rooms[0].titles",
            "expected dict",
        ),
        (
            ('id = "plenary"', 'id = "plenary"\ntitles = { es = 1 }'),
            "rooms[0].titles",
            "non-empty text",
        ),
    ],
)
def test_bad_values_name_the_key(
    tmp_path: Path, change: tuple[str, str], key: str, problem: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace(*change, 1))
    with pytest.raises(ConfigError) as err:
        load_assembly(path)
    assert err.value.source == str(path)
    assert err.value.key == key
    assert problem in err.value.problem


FULL = (
    GOOD
    + """
[[members]]
id = "m2"
name = "N"
country = "DO"
[[members]]
id = "m3"
name = "O"
country = "PS"
[rooms.voting]
max_proxies = 2
[[rooms.polls]]
id = "vote"
kind = "yesno"
electorate = "roll"
secret = true
question.en = "Adopt?"
[media]
[[media.ice_servers]]
urls = ["stun:stun.example.org:3478"]
"""
)


def test_the_full_test_file_loads() -> None:
    a = parse_assembly(tomllib.loads(FULL), "full.toml")
    assert [m.id for m in a.members] == ["m1", "m2", "m3"]


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        (("\n[assembly]", 'languages = ["es"]\n[assembly]'), "top level", "'languages'"),
        (('name = "A"', 'name = "A"\nflor = "en"'), "assembly", "'flor'"),
        (('country = "DO"', 'country = "DO"\nwieght = 2'), "members[1]", "'wieght'"),
        (('id = "plenary"', 'id = "plenary"\nchanels = ["es"]'), "rooms[0]", "'chanels'"),
        (("minutes = 20", "minutes = 20\nminute = 5"), "rooms[0].agenda[0]", "'minute'"),
        (("max_proxies = 2", "max_proxies = 2\nproxy_chain = true"), "rooms[0].voting", ""),
        (('kind = "yesno"', 'kind = "yesno"\nsecrett = true'), "rooms[0].polls[0]", ""),
        (("[media]", "[media]\nstun = 1"), "media", "'stun'"),
        (("urls = [", 'username = "u"\npassword = "p"\nurls = ['), "media.ice_servers[0]", ""),
        (('id = "plenary"', 'id = "plenary"\ngrace_seconds = "soon"'), "rooms[0]", ""),
        (("max_proxies = 2", "key_bits = 1024"), "rooms[0].voting.key_bits", "at least 2048"),
    ],
)
def test_an_unknown_key_anywhere_stops_the_start_naming_file_and_key(
    tmp_path: Path, change: tuple[str, str], key: str, problem: str
) -> None:
    path = tmp_path / "assembly.toml"
    text = FULL.replace(*change, 1)
    assert text != FULL
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_assembly(path)
    assert err.value.source == str(path)
    assert err.value.key.startswith(key), str(err.value)
    assert problem in err.value.problem, str(err.value)
    assert str(err.value).startswith(f"{path}: {key}")


def test_a_typo_in_a_member_reads_as_the_issue_says(tmp_path: Path) -> None:
    path = tmp_path / "assembly.toml"
    path.write_text(FULL.replace('country = "DO"', 'country = "DO"\nwieght = 2'))
    with pytest.raises(ConfigError) as err:
        load_assembly(path)
    assert str(err.value) == f"{path}: members[1]: unknown key 'wieght'"


def test_a_secret_vote_with_a_weight_class_of_one_is_refused_naming_the_member(
    tmp_path: Path,
) -> None:
    path = tmp_path / "assembly.toml"
    path.write_text(FULL.replace('country = "DO"', 'country = "DO"\nweight = 2'))
    with pytest.raises(ConfigError) as err:
        load_assembly(path)
    assert err.value.key == "rooms[0].polls[0].secret"
    assert "'m2' (members[1])" in err.value.problem and "weight 2" in err.value.problem
    # Shared weights are fine; so is the same roll for an open vote or a present electorate.
    path.write_text(FULL.replace('country = "', 'weight = 2\ncountry = "'))
    assert load_assembly(path).members[1].weight == 2
    for change in ("secret = true", "secret = false"), ('electorate = "roll"', ""):
        path.write_text(
            FULL.replace('country = "DO"', 'country = "DO"\nweight = 2').replace(*change)
        )
        assert load_assembly(path).members[1].weight == 2


def serve(config: Path) -> subprocess.CompletedProcess[str]:
    """``hemicycle serve --config config`` in a process of its own, until it exits."""
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"HEMICYCLE_SECRET": SECRET, "PATH": "/usr/bin:/bin"},
    )


def test_serve_stops_on_a_typo_naming_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "typo.toml"
    bad.write_text(FULL.replace('country = "DO"', 'country = "DO"\nwieght = 2'))
    out = serve(bad)
    assert out.returncode == 2
    assert f"{bad}: members[1]: unknown key 'wieght'" in out.stderr


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.toml"
    bad.write_text("[assembly\nname=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_assembly(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_assembly(tmp_path / "nope.toml")


def test_no_rooms_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least one room"):
        parse_assembly({"assembly": {"name": "A"}})


def test_settings_from_a_mapping() -> None:
    s = Settings.from_env(
        {
            "HEMICYCLE_PORT": "9001",
            "HEMICYCLE_BACKEND": "redis://r:6379/1",
            "HEMICYCLE_SECRET": "x" * 20,
        }
    )
    assert (s.port, s.backend, s.secret) == (9001, "redis://r:6379/1", "x" * 20)
    assert s.base_url == "http://127.0.0.1:9001"
    with pytest.raises(ConfigError, match="HEMICYCLE_PORT"):
        Settings.from_env({"HEMICYCLE_PORT": "eighty"})


def test_the_command_reports_a_bad_config_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace("minutes = 20", "minutes = -5"))
    out = serve(bad)
    assert out.returncode == 2
    assert f"{bad}: rooms[0].agenda[0].minutes: must be positive" in out.stderr
