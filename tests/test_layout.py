"""The layout as documented: every module in the README's table, every top-level module either
in the pure core's import contract or named as shell, and the contracts themselves hold."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHELL_AT_TOP = {"cli", "client", "voter", "seal"}
"""Top-level modules that do I/O (or use randomness): the command, the Python client, a
voter's device, sealing ballots (a fresh ephemeral key per ballot)."""


def modules() -> dict[str, list[str]]:
    """Module names by package: ``""`` for ``server/`` itself, else the subpackage."""
    out: dict[str, list[str]] = {}
    for path in sorted((ROOT / "server").rglob("*.py")):
        rel = path.relative_to(ROOT / "server")
        if path.name == "__init__.py":
            continue
        package = rel.parts[0] if len(rel.parts) > 1 else ""
        out.setdefault(package, []).append(path.stem)
    return out


def test_every_module_is_in_the_readme_layout_table() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Layout") :]
    rows = {line.split("|")[1]: line for line in table.splitlines() if line.startswith("| `")}
    missing = []
    for package, names in modules().items():
        key = f" `server/{package}/` " if package else None
        for name in names:
            if key is not None:
                found = key in rows and f"`{name}`" in rows[key]
            else:
                found = any(
                    re.search(rf"`(server/)?{name}\.py`", cell)
                    for cell in rows
                    if "server/" in cell
                )
            if not found:
                missing.append(f"server/{package + '/' if package else ''}{name}.py")
    assert not missing, f"modules missing from the README's layout table: {missing}"


def test_every_top_level_module_is_core_or_named_shell() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    core = next(c for c in contracts if c["type"] == "forbidden")["source_modules"]
    top = set(modules()[""])
    unclassified = top - {m.removeprefix("server.") for m in core} - SHELL_AT_TOP
    assert not unclassified, (
        f"add these to the pure-core contract or to SHELL_AT_TOP: {unclassified}"
    )


def test_the_import_contracts_hold() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint is not None, "import-linter is a test dependency (pyproject.toml)"
    run = subprocess.run(
        [lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout
