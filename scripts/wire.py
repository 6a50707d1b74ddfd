"""Write docs/events.schema.json and docs/events.md from server/events.py and the fold.

    .venv/bin/python scripts/wire.py           # write both files
    .venv/bin/python scripts/wire.py --check   # exit 1 if the committed files are stale

tests/test_wire_schema.py runs the check; server/wire.py builds the contents.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a file: make ``server`` importable
    sys.path.insert(0, str(ROOT))

from server import wire  # noqa: E402


def events_module() -> ModuleType | None:
    """``server.events``, or ``None`` while it does not exist."""
    if importlib.util.find_spec("server.events") is None:
        return None
    return importlib.import_module("server.events")


def stale(files: dict[str, str], root: Path = ROOT) -> list[str]:
    """The files whose committed text differs from ``files`` (missing ones included)."""
    out = []
    for name, text in files.items():
        path = root / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            out.append(name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether files are stale")
    args = parser.parse_args(argv)
    files = wire.generate(events_module())
    if args.check:
        names = stale(files)
        for name in names:
            print(f"{name} is out of date: run {wire.REGENERATE}", file=sys.stderr)
        return 1 if names else 0
    for name, text in files.items():
        (ROOT / name).write_text(text, encoding="utf-8")
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
