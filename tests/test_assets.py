"""Static files: content-hashed names, compressed, cached for good (server/web/assets.py)."""

from __future__ import annotations

import gzip
import re

import httpx

from server.web.assets import IMMUTABLE
from server.web.pages import ASSETS, STATIC


async def test_pages_name_hashed_files_served_compressed_and_immutable(start_node) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    async with httpx.AsyncClient(base_url=node.url) as http:
        page = await http.get("/r/plenary")
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        refs = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
        assert refs and all(r.startswith("/static/h/") for r in refs), refs
        room = (STATIC / "room.html").read_text(encoding="utf-8")
        assert len(refs) == 2, f"one script and one style sheet for the page: {refs}"
        for ref in refs:
            r = await http.get(ref, headers={"Accept-Encoding": "gzip"})
            assert r.status_code == 200, ref
            assert r.headers["cache-control"] == IMMUTABLE
            plain = ref.removeprefix("/static/h/")
            stem, digest, ext = plain.rsplit(".", 2)
            assert len(digest) == 12
            if stem == "room.bundle":  # the page's scripts (style sheets) as one file, in order
                bundled = re.findall(rf'(?:src|href)="/static/([^"]+\.{ext})"', room)
                assert len(bundled) > 1, bundled
                text = r.content.decode()
                at = [text.index(f"/* {name} */\n") for name in bundled]
                assert at == sorted(at), "in the page's order"
                for name in bundled:
                    assert (STATIC / name).read_text(encoding="utf-8") in text, name
                continue
            assert r.content == (STATIC / f"{stem}.{ext}").read_bytes()  # httpx un-gzips
            assert r.headers.get("content-encoding") == "gzip", ref
        # Each file stays served under its own hashed name too.
        one = await http.get(f"/static/h/{ASSETS.names['audio.js']}")
        assert one.content == (STATIC / "audio.js").read_bytes()
        raw = await http.get(refs[-1], headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in raw.headers
        missing = await http.get("/static/h/room.000000000000.js")
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
        # The i18n files keep their names (hc.js asks by language), compressed on the way.
        async with http.stream(
            "GET", "/static/i18n/fr.json", headers={"Accept-Encoding": "gzip"}
        ) as r:
            body = b"".join([chunk async for chunk in r.aiter_raw()])
            assert r.headers["content-encoding"] == "gzip"
            assert gzip.decompress(body) == (STATIC / "i18n" / "fr.json").read_bytes()
