"""Where a result came from: the command line, the versions of dmftjax and of what it
imports, the git commit of the source tree when there is one, the machine's devices."""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

# the distributions dmftjax imports (pyproject's dependencies), in the order users ask about
DEPENDENCIES = (
    "jax",
    "jaxlib",
    "equinox",
    "optax",
    "optimistix",
    "jaxtyping",
    "numpy",
    "matplotlib",
    "tqdm",
    "click",
)


def versions() -> dict[str, str | None]:
    """`{"python": ..., "dmftjax": ..., "jax": ..., ...}`; `None` for a distribution that
    is not installed."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("dmftjax",) + DEPENDENCIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


@functools.cache
def git_commit() -> dict | None:
    """The commit of the git checkout dmftjax is imported from (`None` for an installed
    wheel or without git): `{"commit": sha, "dirty": bool}`, dirty when tracked files
    differ from the commit."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": sha, "dirty": bool(status.strip())}


def provenance(argv: list[str] | None = None) -> dict:
    """Everything a result file records about how it was made (JSON-ready)."""
    import jax

    return {
        "command_line": list(sys.argv if argv is None else argv),
        "versions": versions(),
        "git": git_commit(),
        "platform": platform.platform(),
        "devices": [str(d) for d in jax.devices()],
        "x64": bool(jax.config.jax_enable_x64),  # type: ignore[attr-defined]  # dynamic attr
    }
