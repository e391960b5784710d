"""`ragtune --help` and `ragtune sources` start without loading the heavy libraries (issue 19: a slow CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ragtune.config import init_project

HEAVY = ["torch", "transformers", "sentence_transformers", "onnxruntime", "sklearn", "scipy", "setfit", "lancedb"]

PROBE = """
import json, sys
sys.argv = ["ragtune", *json.loads(sys.argv[1])]
from ragtune.cli import app
try:
    app()
except SystemExit:
    pass
print("LOADED " + json.dumps([m for m in json.loads(sys.argv_heavy) if m in sys.modules]))
"""


def loaded_by(args: list[str]) -> list[str]:
    code = PROBE.replace("sys.argv_heavy", repr(json.dumps(HEAVY)))
    out = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, timeout=120)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("LOADED "))
    return list(json.loads(line[len("LOADED "):]))


def test_help_loads_no_heavy_library() -> None:
    assert loaded_by(["--help"]) == []


def test_sources_loads_only_the_store(tmp_path: Path) -> None:
    init_project(tmp_path / "p")
    assert loaded_by(["sources", "-p", str(tmp_path / "p")]) == ["lancedb"]  # it reads the index, nothing else
