"""Exports for the minutes: poll results (JSON, CSV) and the attendance report (JSON, CSV).

Moderators only: ``Authorization: Bearer <their invite token>`` (as ``POST /api/invites``).
Texts come in the language asked for (``?lang=fr``), falling back to the floor language.
A secret ballot's export lists receipts with their choices, never names.

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

from ..errors import Forbidden, HemicycleError, Refused
from ..node.feature import Feature
from ..node.http import moderator, node_of
from ..types import CAPTIONER, INTERPRETER

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
    },
    "es": {
        "adopted": "aprobada",
        "rejected": "rechazada",
        "no_quorum": "sin quórum",
        "carried": "aprobada",
        "no_majority": "sin mayoría",
        "tie": "empate",
        "no_votes": "sin votos",
    },
    "fr": {
        "adopted": "adoptée",
        "rejected": "rejetée",
        "no_quorum": "quorum non atteint",
        "carried": "adoptée",
        "no_majority": "pas de majorité",
        "tie": "égalité",
        "no_votes": "aucun vote",
    },
    "ru": {
        "adopted": "принято",
        "rejected": "отклонено",
        "no_quorum": "нет кворума",
        "carried": "принято",
        "no_majority": "нет большинства",
        "tie": "равенство",
        "no_votes": "нет голосов",
    },
}
NOT_COUNTED = (INTERPRETER, CAPTIONER)


def _moderator(request: Request) -> dict[str, Any]:
    return moderator(request, "export")


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


def _weight(centi: int) -> float:
    return centi / 100


def poll_export(node: Node, room: str, poll_id: str, lang: str) -> dict[str, Any]:
    """The result of one sealed poll, with its question and options in ``lang``."""
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
    texts = {o["id"]: _text(o["text"], lang, floor) for o in poll["options"]}
    by_id = {o["id"]: o for o in result["options"]}
    out: dict[str, Any] = {
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
        "opened_at": iso(poll["opened_at"]),
        "closed_at": iso(poll["closed_at"]),
        "published_at": iso(poll["published_at"]),
        "options": [
            {
                "id": o["id"],
                "text": texts[o["id"]],
                "ballots": by_id[o["id"]]["n"],
                "weight": _weight(by_id[o["id"]]["w"]),
            }
            for o in poll["options"]
        ],
        "ballots": result["ballots"],
        "weight": _weight(result["weight"]),
        "eligible": {
            "members": result["eligible"]["n"],
            "weight": _weight(result["eligible"]["w"]),
        },
        "present": {"members": result["present"]["n"], "weight": _weight(result["present"]["w"])},
        "turnout": {"voters": result["turnout"]["n"], "weight": _weight(result["turnout"]["w"])},
        "missing": result["missing"],
        "quorum": result["quorum"],
        "threshold": result["threshold"],
        "outcome": result["outcome"],
        "outcome_text": OUTCOMES.get(lang, OUTCOMES["en"])[result["outcome"]],
        "winner": result["winner"],
    }
    if poll["secret"]:
        out["receipts"] = [
            {
                "receipt": r["receipt"],
                "choice": [texts[c] for c in r["choice"]],
                "weight": _weight(r["w"]),
            }
            for r in result["receipts"]
        ]
        out["keys"] = result["keys"]
    else:
        out["roll_call"] = [
            {
                "voter": r["voter"],
                "name": r["name"],
                "cast_by": r["by"],
                "choice": [texts[c] for c in r["choice"]],
                "weight": _weight(r["w"]),
            }
            for r in result["roll_call"]
        ]
    return out


def poll_csv(data: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for key in (
        "assembly",
        "room",
        "poll",
        "question",
        "kind",
        "electorate",
        "secret",
        "opened_at",
        "closed_at",
        "published_at",
        "ballots",
        "weight",
        "missing",
        "outcome_text",
        "winner",
    ):
        w.writerow([key, data[key]])
    w.writerow(["eligible_members", data["eligible"]["members"]])
    w.writerow(["present_members", data["present"]["members"]])
    w.writerow(["turnout_voters", data["turnout"]["voters"]])
    q = data["quorum"]
    w.writerow(
        [
            "quorum",
            "none"
            if q is None
            else f"{q['of']} {q['fraction']}{' weighted' if q['weighted'] else ''}: "
            f"{q['have']} of {q['required']} required, met={q['met']}",
        ]
    )
    t = data["threshold"]
    w.writerow(
        [
            "threshold",
            f"{t['rule']} (abstentions {t['abstentions']}): "
            f"{t['lead'] / 100} of {t['basis'] / 100}, met={t['met']}",
        ]
    )
    w.writerow([])
    w.writerow(["option", "text", "ballots", "weight"])
    for o in data["options"]:
        w.writerow([o["id"], o["text"], o["ballots"], f"{o['weight']:.2f}"])
    w.writerow([])
    if data["secret"]:
        w.writerow(["receipt", "choice", "weight"])
        for r in data["receipts"]:
            w.writerow([r["receipt"], " + ".join(r["choice"]), f"{r['weight']:.2f}"])
    else:
        w.writerow(["voter", "name", "cast_by", "choice", "weight"])
        for r in data["roll_call"]:
            w.writerow(
                [r["voter"], r["name"], r["cast_by"], " + ".join(r["choice"]), f"{r['weight']:.2f}"]
            )
    return buf.getvalue()


def attendance(node: Node, lang: str) -> dict[str, Any]:
    """Everyone who joined any room, the member organisations they represent, countries."""
    roll = {m.id: m for m in node.assembly.members}
    people: dict[str, dict[str, Any]] = {}
    for room, hub in node.hubs.items():
        for pid, p in hub.state["core"]["people"].items():
            seen = people.setdefault(
                pid,
                {
                    "name": p["name"],
                    "role": p["role"],
                    "org": p.get("org"),
                    "country": p.get("country"),
                    "rooms": [],
                },
            )
            seen["rooms"].append(room)
    counted = [p for p in people.values() if p["role"] not in NOT_COUNTED]
    members = sorted({p["org"] for p in counted if p["org"] in roll})
    countries = sorted({roll[m].country for m in members})
    numbers = {"members": len(members), "countries": len(countries), "participants": len(counted)}
    return {
        **numbers,
        "line": ATTENDANCE.get(lang, ATTENDANCE["en"]).format(**numbers),
        "interpreters": sum(1 for p in people.values() if p["role"] in NOT_COUNTED),
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
    claims = _moderator(request)
    if claims["room"] != room:
        raise Forbidden("your invite is for another room")
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
    _moderator(request)
    data = attendance(node, _lang(request))
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
