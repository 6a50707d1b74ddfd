"""Exports for the minutes: poll results (JSON, CSV) and the attendance report (JSON, CSV).

Moderators only: ``Authorization: Bearer <their invite token>`` (as ``POST /api/invites``).
Texts come in the language asked for (``?lang=fr``), falling back to the floor language.
A poll's export is the ``result`` of ``poll.published`` with the same names and units
(docs/protocol.md, "Result"), plus the texts. A secret ballot's export lists the trackers
of the sealed ballots received and, separately, the counted ballots (choice and weight),
never names or tokens.

    GET /api/rooms/{room}/polls/{poll}/result.json|csv
    GET /api/attendance.json|csv
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import HemicycleError, Refused
from ..node.feature import Feature
from ..node.http import moderator, node_of
from ..types import CAPTIONER, INTERPRETER, OBSERVER, PARTICIPANT

if TYPE_CHECKING:
    from ..node.app import Node

ATTENDANCE = {
    "en": "{members} members from {countries} countries registered {participants} participants",
    "es": "{members} miembros de {countries} países inscribieron a {participants} participantes",
    "fr": "{members} membres de {countries} pays ont inscrit {participants} participants",
    "ru": "{members} членов из {countries} стран зарегистрировали {participants} участников",
}
OUTCOMES = {
    "en": {
        "adopted": "adopted",
        "rejected": "rejected",
        "no_quorum": "no quorum",
        "carried": "carried",
        "no_majority": "no majority",
        "tie": "tie",
        "no_votes": "no votes",
        "too_few": "too few ballots to reveal",
    },
    "es": {
        "adopted": "aprobada",
        "rejected": "rechazada",
        "no_quorum": "sin quórum",
        "carried": "aprobada",
        "no_majority": "sin mayoría",
        "tie": "empate",
        "no_votes": "sin votos",
        "too_few": "muy pocas papeletas para revelarlas",
    },
    "fr": {
        "adopted": "adoptée",
        "rejected": "rejetée",
        "no_quorum": "quorum non atteint",
        "carried": "adoptée",
        "no_majority": "pas de majorité",
        "tie": "égalité",
        "no_votes": "aucun vote",
        "too_few": "trop peu de bulletins pour les révéler",
    },
    "ru": {
        "adopted": "принято",
        "rejected": "отклонено",
        "no_quorum": "нет кворума",
        "carried": "принято",
        "no_majority": "нет большинства",
        "tie": "равенство",
        "no_votes": "нет голосов",
        "too_few": "слишком мало бюллетеней для раскрытия",
    },
}
COUNTED = (PARTICIPANT,)
"""A member organisation's participants: not the chair, panelists, booths or observers."""


def _text(texts: dict[str, str], lang: str, floor: str) -> str:
    return texts.get(lang) or texts.get(floor) or next(iter(texts.values()))


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def poll_export(node: Node, room: str, poll_id: str, lang: str) -> dict[str, Any]:
    """The result of one sealed poll: the ``result`` of ``poll.published`` key for key, value
    for value (weights in hundredths, choices as option ids, times in ms), plus the poll's
    description and its texts in ``lang`` (``texts``: option id → text, ``outcome_text``)."""
    hub = node.hubs.get(room)
    if hub is None:
        raise Refused(f"there is no room {room!r}", code="unknown_room")
    poll = hub.state["polls"]["polls"].get(poll_id)
    if poll is None:
        raise Refused(f"there is no poll {poll_id!r}", code="unknown_poll")
    if not poll["sealed"] or poll["result"] is None:
        raise Refused(
            f"the poll is {poll['state']} and has no result yet", code=f"poll_is_{poll['state']}"
        )
    floor = hub.state["core"]["floor"]
    result = poll["result"]
    return {
        "assembly": node.assembly.name,
        "room": room,
        "poll": poll_id,
        "lang": lang,
        "question": _text(poll["question"], lang, floor),
        "questions": poll["question"],
        "kind": poll["kind"],
        "max": poll["max"],
        "electorate": poll["electorate"],
        "secret": poll["secret"],
        "state": poll["state"],
        "published_at": poll["published_at"],
        **result,
        "texts": {o["id"]: _text(o["text"], lang, floor) for o in poll["options"]},
        "outcome_text": OUTCOMES.get(lang, OUTCOMES["en"])[result["outcome"]],
    }


def _ids(choice: str | list[str]) -> str:
    return choice if isinstance(choice, str) else " + ".join(choice)


def _texts(choice: str | list[str], texts: dict[str, str]) -> str:
    return " + ".join(texts[c] for c in ([choice] if isinstance(choice, str) else choice))


def poll_csv(data: dict[str, Any]) -> str:
    """The export as CSV: the same names and units as the JSON; times also in ISO 8601 UTC
    (``…_utc``); a text column beside every option id."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for key in (
        "assembly",
        "room",
        "poll",
        "lang",
        "question",
        "kind",
        "max",
        "electorate",
        "secret",
        "state",
        "ballots",
        "weight",
        "missing",
        "outcome",
        "outcome_text",
        "winner",
    ):
        w.writerow([key, data[key]])
    for key in ("opened_at", "closed_at", "sealed_at", "published_at"):
        w.writerow([f"{key}_utc", iso(data[key])])
    for key in ("eligible", "present", "turnout"):
        w.writerow([f"{key}.n", data[key]["n"]])
        w.writerow([f"{key}.w", data[key]["w"]])
    for key in ("quorum", "threshold"):
        for field, value in (data[key] or {}).items():
            w.writerow([f"{key}.{field}", value])
    w.writerow([])
    texts = data["texts"]
    w.writerow(["option", "text", "n", "w"])
    for o in data["options"]:
        w.writerow([o["id"], texts[o["id"]], o["n"], o["w"]])
    w.writerow([])
    if data["secret"]:
        for key in ("counted", "invalid", "late", "mix"):
            w.writerow([key, data.get(key, 0)])
        w.writerow([])
        w.writerow(["tracker"])
        for tracker in data.get("trackers", []):
            w.writerow([tracker])
        w.writerow([])
        w.writerow(["choice", "choice_text", "w"])
        for r in data.get("revealed", []):
            w.writerow([_ids(r["choice"]), _texts(r["choice"], texts), r["w"]])
    else:
        w.writerow(["voter", "name", "by", "choice", "choice_text", "w"])
        for r in data["roll_call"]:
            row = [r["voter"], r["name"], r["by"], _ids(r["choice"]), _texts(r["choice"], texts)]
            w.writerow([*row, r["w"]])
    return buf.getvalue()


def attendance(node: Node, lang: str, room: str) -> dict[str, Any]:
    """Everyone who joined ``room``, the member organisations they represent, countries.

    One room only: a moderator's token is bound to its room (another room's chair exports
    that room's own report)."""
    roll = {m.id: m for m in node.assembly.members}
    people: dict[str, dict[str, Any]] = {}
    hub = node.hubs.get(room)
    if hub is None:
        raise Refused(f"there is no room {room!r}", code="unknown_room")
    for pid, p in hub.state["core"]["people"].items():
        people[pid] = {
            "name": p["name"],
            "role": p["role"],
            "org": p.get("org"),
            "country": p.get("country"),
            "rooms": [room],
        }
    counted = [p for p in people.values() if p["role"] in COUNTED]
    members = sorted({p["org"] for p in counted if p["org"] in roll})
    countries = sorted({roll[m].country for m in members})
    numbers = {"members": len(members), "countries": len(countries), "participants": len(counted)}
    return {
        **numbers,
        "line": ATTENDANCE.get(lang, ATTENDANCE["en"]).format(**numbers),
        "interpreters": sum(1 for p in people.values() if p["role"] in (INTERPRETER, CAPTIONER)),
        "observers": sum(1 for p in people.values() if p["role"] == OBSERVER),
        "roll": len(roll),
        "member_list": [
            {
                "id": m,
                "name": roll[m].name,
                "country": roll[m].country,
                "participants": sum(1 for p in counted if p["org"] == m),
            }
            for m in members
        ],
        "people": sorted(
            (
                {
                    "name": p["name"],
                    "role": p["role"],
                    "org": p["org"] or "",
                    "member": roll[p["org"]].name if p["org"] in roll else "",
                    "country": roll[p["org"]].country if p["org"] in roll else p["country"] or "",
                    "rooms": sorted(p["rooms"]),
                }
                for p in people.values()
            ),
            key=lambda p: (p["member"], p["name"]),
        ),
    }


def attendance_csv(data: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["summary", data["line"]])
    w.writerow(["members", data["members"]])
    w.writerow(["countries", data["countries"]])
    w.writerow(["participants", data["participants"]])
    w.writerow(["interpreters_and_captioners", data["interpreters"]])
    w.writerow(["observers", data["observers"]])
    w.writerow([])
    w.writerow(["name", "role", "member", "org", "country", "rooms"])
    for p in data["people"]:
        w.writerow(
            [p["name"], p["role"], p["member"], p["org"], p["country"], " ".join(p["rooms"])]
        )
    return buf.getvalue()


def _lang(request: Request) -> str:
    lang = request.query_params.get("lang", "en")
    return lang if lang.isalpha() and len(lang) <= 3 else "en"


async def poll_result(request: Request) -> Response:
    node = node_of(request)
    room, poll_id, fmt = (
        request.path_params["room"],
        request.path_params["poll"],
        request.path_params["fmt"],
    )
    if fmt not in ("json", "csv"):
        raise HemicycleError("results are json or csv", code="not_found")
    moderator(request, "export the results", room)
    await node.room(room)  # opened if this node opens rooms on demand
    data = poll_export(node, room, poll_id, _lang(request))
    if fmt == "csv":
        return Response(
            poll_csv(data),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{room}-{poll_id}.csv"'},
        )
    return JSONResponse(data)


async def attendance_report(request: Request) -> Response:
    node = node_of(request)
    if request.path_params["fmt"] not in ("json", "csv"):
        raise HemicycleError("the attendance report is json or csv", code="not_found")
    claims = moderator(request, "export the attendance")
    room = request.query_params.get("room", claims["room"])
    moderator(request, "export the attendance", room)
    await node.room(room)  # opened if this node opens rooms on demand
    data = attendance(node, _lang(request), room)
    if request.path_params["fmt"] == "csv":
        return Response(
            attendance_csv(data),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="attendance.csv"'},
        )
    return JSONResponse(data)


ROUTES = [
    Route("/api/rooms/{room}/polls/{poll}/result.{fmt:str}", poll_result),
    Route("/api/attendance.{fmt:str}", attendance_report),
]


class Results(Feature):
    """Poll results and the attendance report for the minutes."""

    name = "results"

    def routes(self) -> Sequence[BaseRoute]:
        return ROUTES
