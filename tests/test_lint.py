"""House style and types: ruff (lint and format) over the sources, and a type check of the
public API with mypy: `tests/typecheck/public_api.py` (typed use of every public name)
has no error, and every line of `tests/typecheck/misuse.py` marked `# E` is one."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["dmftjax", "tests", "benchmarks"]


def _tool(name: str) -> list[str]:
    if shutil.which(name) is None:
        pytest.importorskip(name)  # the test extra installs it: a skip only outside it
    return [sys.executable, "-m", name]


def test_ruff_lint():
    proc = subprocess.run(
        _tool("ruff") + ["check", *SOURCES], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_ruff_format():
    proc = subprocess.run(
        _tool("ruff") + ["format", "--check", *SOURCES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_public_api_type_checks():
    check = ROOT / "tests" / "typecheck"
    proc = subprocess.run(
        _tool("mypy")
        + [
            "--follow-imports=silent",
            "--ignore-missing-imports",
            "--no-incremental",
            "--show-error-codes",
            str(check / "public_api.py"),
            str(check / "misuse.py"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = re.findall(r"^(.*?):(\d+): error: (.*)$", proc.stdout, re.M)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # 2: mypy itself failed
    in_public = [e for e in errors if e[0].endswith("public_api.py")]
    assert not in_public, in_public
    marked = {
        i + 1
        for i, line in enumerate((check / "misuse.py").read_text().splitlines())
        if line.rstrip().endswith("# E")
    }
    caught = {int(line) for path, line, _ in errors if path.endswith("misuse.py")}
    assert marked, "misuse.py marks no line"
    assert caught == marked, (sorted(marked - caught), sorted(caught - marked), errors)


def test_the_package_type_checks():
    proc = subprocess.run(
        _tool("mypy") + ["--no-incremental", "dmftjax"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
