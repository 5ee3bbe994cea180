"""The README's two commands, run as a new user runs them: in a fresh copy of the
repository, on a Python whose pip refuses any install outside a virtual environment
(`PIP_REQUIRE_VIRTUALENV`, what a stock Debian or Ubuntu Python does with its
EXTERNALLY-MANAGED marker). The second command's test run is narrowed to one quick file
(through `PYTEST_ADDOPTS`, the command itself unchanged): the whole suite is this run."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    commands = [line for line in block.splitlines() if line.strip()]
    assert len(commands) == 2, commands
    return commands


def _fresh_copy(dest: Path) -> Path:
    """The repository's tracked files as they are in this checkout (what a clone has)."""
    try:
        files = (
            subprocess.run(
                ["git", "-C", str(ROOT), "ls-files", "-z"], check=True, capture_output=True
            )
            .stdout.decode()
            .split("\0")
        )
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: no clone to copy")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _env() -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTEST_ADDOPTS")
    }
    # no environment of ours on PATH: `python3` is the machine's own
    ours = sys.prefix if sys.prefix != sys.base_prefix else None
    path = [p for p in env.get("PATH", "").split(os.pathsep) if not (ours and p.startswith(ours))]
    env["PATH"] = os.pathsep.join([str(Path(sys.base_prefix) / "bin")] + path)
    env["PIP_REQUIRE_VIRTUALENV"] = "1"
    env["MPLBACKEND"] = "Agg"
    env["DMFTJAX_CACHE_DIR"] = ""
    return env


def test_the_readme_commands_run_in_a_fresh_clone_without_system_installs(tmp_path):
    first, second = _readme_commands()
    clone = _fresh_copy(tmp_path / "dmftjax")
    env = _env()
    # the guard bites: the machine's own Python refuses a system-wide install
    refused = subprocess.run(
        [
            str(Path(sys.base_prefix) / "bin" / "python3"),
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--no-deps",
            "-e",
            ".",
        ],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0
    assert "virtualenv" in (refused.stdout + refused.stderr).lower()

    one = subprocess.run(
        ["bash", "-c", first], cwd=clone, env=env, capture_output=True, text=True, timeout=1500
    )
    assert one.returncode == 0, (one.stdout + one.stderr)[-4000:]
    for ext in ("png", "json", "csv"):
        assert (clone / "dmftjax-output" / f"demo.{ext}").stat().st_size > 0
    assert "final error DMFT" in one.stdout  # the demo's table

    env["PYTEST_ADDOPTS"] = "tests/test_core.py -x -p no:cacheprovider"
    two = subprocess.run(
        ["bash", "-c", second], cwd=clone, env=env, capture_output=True, text=True, timeout=1500
    )
    assert two.returncode == 0, (two.stdout + two.stderr)[-4000:]
    assert re.search(r"\d+ passed", two.stdout), two.stdout[-2000:]
    assert "failed" not in two.stdout
    # the package ran from the environment the commands made, not from ours
    venv_python = clone / ".venv" / "bin" / "python"
    where = subprocess.run(
        [str(venv_python), "-c", "import dmftjax; print(dmftjax.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert where.returncode == 0 and str(clone) in where.stdout
