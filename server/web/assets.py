"""Static files with content-hashed names, compressed once, cached for good.

A participant on a weak mobile link should pay for the page's scripts once: the pages refer
to ``/static/h/<name>.<hash>.<ext>`` (the first 12 hex digits of the file's SHA-256), served
with ``Cache-Control: public, max-age=31536000, immutable`` — a changed file has a new name,
so nothing stale is ever used — and gzip-compressed once at start-up (level 9; stdlib only)
for browsers that accept it. The HTML pages are rewritten once so that every
``src="/static/…"`` and ``href="/static/…"`` naming a file under ``static/`` points to its
hashed name; a page itself is not cached (``no-store``: it is small and names the current
files). ``/static/…`` keeps serving the plain names (the i18n files, which hc.js asks for by
language), compressed by the app's gzip middleware.

A page's deferred scripts are served as one file, and its style sheets as another
(``<page>.bundle.<hash>.js``/``.css``: the files concatenated in the page's order). Over
HTTP/1.1 a browser opens six connections to a host, so the member page's 14 scripts and 9
style sheets cost four round trips before the last arrived: 0.6 s on a 150 ms mobile link
(tests/test_reach_slow.py). Deferred scripts run in document order after parsing, every one
of ours is strict and none reads ``document.currentScript``, so one file in that order runs
as the separate ones did; the style sheets keep their cascade order. Each file stays served
under its own hashed name too.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from ..errors import HemicycleError

PREFIX = "/static/h/"
IMMUTABLE = "public, max-age=31536000, immutable"
COMPRESSIBLE = (".js", ".css", ".html", ".json", ".svg", ".txt")
_REF = re.compile(r'(src|href)="/static/([^"?#]+)"')
_SCRIPT = re.compile(r'<script src="/static/([^"?#]+\.js)" defer></script>\n?')
_STYLE = re.compile(r'<link rel="stylesheet" href="/static/([^"?#]+\.css)">\n?')


@dataclass(frozen=True)
class Asset:
    body: bytes
    gz: bytes | None
    media_type: str


class Assets:
    """The files under ``root``, by hashed name; and the pages rewritten to use them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, Asset] = {}
        self.names: dict[str, str] = {}
        """Plain relative name -> hashed relative name."""
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix != ".html":
                self._add(path)
        self.pages = {
            p.name: _REF.sub(self._ref, self._bundled(p)).encode() for p in root.glob("*.html")
        }

    def _add(self, path: Path) -> None:
        self._add_body(path.relative_to(self.root).as_posix(), path.read_bytes())

    def _add_body(self, rel: str, body: bytes) -> None:
        digest = hashlib.sha256(body).hexdigest()[:12]
        stem, dot, ext = rel.rpartition(".")
        hashed = f"{stem}.{digest}.{ext}" if dot else f"{rel}.{digest}"
        gz = None
        if rel.endswith(COMPRESSIBLE):
            packed = gzip.compress(body, 9, mtime=0)
            gz = packed if len(packed) < len(body) else None
        media = mimetypes.guess_type(rel)[0] or "application/octet-stream"
        if media.startswith("text/") or media in ("application/javascript", "application/json"):
            media += "; charset=utf-8"
        self.files[hashed] = Asset(body, gz, media)
        self.names[rel] = hashed

    def _bundled(self, page: Path) -> str:
        """The page with its deferred scripts, and its style sheets, each made one file."""
        html = page.read_text(encoding="utf-8")
        for pattern, ext, tag in (
            (_SCRIPT, "js", '<script src="/static/{}" defer></script>\n'),
            (_STYLE, "css", '<link rel="stylesheet" href="/static/{}">\n'),
        ):
            names = [n for n in pattern.findall(html) if (self.root / n).is_file()]
            if len(names) < 2:
                continue
            parts = [f"/* {n} */\n" + (self.root / n).read_text(encoding="utf-8") for n in names]
            rel = f"{page.stem}.bundle.{ext}"
            self._add_body(
                rel, "\n;\n".join(parts).encode() if ext == "js" else "\n".join(parts).encode()
            )
            first = True

            def one(
                match: re.Match[str], rel: str = rel, tag: str = tag, names: list[str] = names
            ) -> str:
                nonlocal first
                if match.group(1) not in names:
                    return match.group(0)
                keep, first = first, False
                return tag.format(rel) if keep else ""

            html = pattern.sub(one, html)
        return html

    def _ref(self, match: re.Match[str]) -> str:
        hashed = self.names.get(match.group(2))
        return f'{match.group(1)}="{PREFIX}{hashed}"' if hashed else match.group(0)

    def page(self, name: str) -> Response:
        return Response(
            self.pages[name],
            media_type="text/html; charset=utf-8",
            headers={"Cache-Control": "no-store"},
        )

    async def serve(self, request: Request) -> Response:
        asset = self.files.get(request.path_params["name"])
        if asset is None:
            raise HemicycleError("no such file", code="not_found")
        headers = {"Cache-Control": IMMUTABLE, "Vary": "Accept-Encoding"}
        accepts = request.headers.get("accept-encoding", "")
        if asset.gz is not None and "gzip" in accepts:
            headers["Content-Encoding"] = "gzip"
            return Response(asset.gz, media_type=asset.media_type, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)
