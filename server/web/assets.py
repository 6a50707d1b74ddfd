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
            p.name: _REF.sub(self._ref, p.read_text(encoding="utf-8")).encode()
            for p in root.glob("*.html")
        }

    def _add(self, path: Path) -> None:
        body = path.read_bytes()
        rel = path.relative_to(self.root).as_posix()
        digest = hashlib.sha256(body).hexdigest()[:12]
        stem, dot, ext = rel.rpartition(".")
        hashed = f"{stem}.{digest}.{ext}" if dot else f"{rel}.{digest}"
        gz = None
        if path.suffix in COMPRESSIBLE:
            packed = gzip.compress(body, 9, mtime=0)
            gz = packed if len(packed) < len(body) else None
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if media.startswith("text/") or media in ("application/javascript", "application/json"):
            media += "; charset=utf-8"
        self.files[hashed] = Asset(body, gz, media)
        self.names[rel] = hashed

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
