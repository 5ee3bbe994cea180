"""The documentation site (mkdocs.yml, docs/): it builds with `mkdocs build --strict`, its
API reference covers every public name, and the examples of its pages run.

The examples run at small sizes: every `num_samples=`, `dim=`, `num_seeds=`,
`num_replicas=` and `steps=` keyword of a page's code is capped (`SMALL`), and they run
in one subprocess with XLA's CPU optimisations turned down (`XLA_FLAGS`), which cuts the
compilation time that dominates at these sizes by about three times; what is checked is
that the code runs, not its numbers. Blocks fenced as ```` ```{.python .no-test} ```` are
shown but not run here (each more engine to compile would add seconds to the suite)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API = DOCS / "api"

# pages whose ```python blocks form a complete program, run top to bottom, in two
# subprocesses side by side (about equal compilation work each)
RUNNABLE = (
    ("how-to/model.md", "how-to/algorithm.md"),
    ("index.md", "getting-started.md", "how-to/loss.md", "how-to/preprocessing.md"),
)
PAGES = tuple(page for group in RUNNABLE for page in group)
SMALL = {"num_samples": 128, "dim": 60, "num_seeds": 2, "num_replicas": 2, "steps": 8}
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def _env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.update(
        MPLBACKEND="Agg", NO_MKDOCS_2_WARNING="1", DMFTJAX_CACHE_DIR="", TQDM_DISABLE="1", **extra
    )
    return env


# --------------------------------------------------------------------------------------
# the public names


def public_names() -> list[str]:
    """`dmftjax.X` for every `from ._module import X as X` of dmftjax/__init__.py, and
    `dmftjax.plotting.f` for every public function of dmftjax/plotting.py (those in its
    `__all__` when it has one)."""
    names = []
    for node in ast.parse((ROOT / "dmftjax" / "__init__.py").read_text()).body:
        if isinstance(node, ast.ImportFrom):
            names += [f"dmftjax.{a.asname}" for a in node.names if a.asname == a.name]
    plotting = ast.parse((ROOT / "dmftjax" / "plotting.py").read_text()).body
    exported = None  # the module's __all__, when it has one
    for node in plotting:
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) == "__all__" for t in node.targets
        ):
            exported = set(ast.literal_eval(node.value))
    for node in plotting:
        if (
            isinstance(node, ast.FunctionDef)
            and not node.name.startswith("_")
            and (exported is None or node.name in exported)
        ):
            names.append(f"dmftjax.plotting.{node.name}")
    return names


def api_directives() -> dict[str, str]:
    """`{identifier: page}` for every `::: identifier` in docs/api/*.md."""
    found = {}
    for page in sorted(API.glob("*.md")):
        for ident in re.findall(r"^:::\s+(\S+)\s*$", page.read_text(), flags=re.M):
            assert ident not in found, f"{ident} is documented twice ({found[ident]}, {page.name})"
            found[ident] = page.name
    return found


def test_every_public_name_has_a_directive():
    names, directives = public_names(), api_directives()
    assert len(names) > 70 and "dmftjax.solve_dmft" in names and "dmftjax.__version__" not in names
    missing = [n for n in names if n not in directives]
    assert not missing, f"public names without a `::: name` block in docs/api/*.md: {missing}"
    stale = sorted(set(directives) - set(names))
    assert not stale, f"docs/api/*.md documents names that are not public: {stale}"


# --------------------------------------------------------------------------------------
# the build


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log[-6000:]}"
    assert "WARNING" not in log, log[-6000:]
    return out


def test_site_builds_strict(site):
    assert (site / "index.html").is_file()
    for page in (
        "getting-started",
        "conventions",
        "equations",
        "benchmarks",
        "hard-case",
        "reliability",
        "cli",
        "how-to/model",
        "how-to/loss",
        "how-to/preprocessing",
        "how-to/algorithm",
    ):
        assert (site / page / "index.html").is_file(), page


def test_every_public_name_has_an_anchor(site):
    html = "".join(p.read_text() for p in (site / "api").glob("*/index.html"))
    missing = [n for n in public_names() if f'id="{n}"' not in html]
    assert not missing, f"no anchor in the built API reference for {missing}"


def test_cli_reference_lists_every_subcommand_and_option(site):
    from dmftjax.cli import main

    html = (site / "cli" / "index.html").read_text()
    for name, command in main.commands.items():
        assert f"dmftjax {name}" in html, name
        for param in command.params:
            for opt in getattr(param, "opts", []) + getattr(param, "secondary_opts", []):
                if opt.startswith("-"):
                    assert opt in html, f"dmftjax {name} {opt}"


# --------------------------------------------------------------------------------------
# the examples


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.M | re.S)


def shrink(code: str) -> str:
    def cap(m):
        return f"{m.group(1)}={min(int(m.group(2)), SMALL[m.group(1)])}"

    names = "|".join(SMALL)
    return re.sub(rf"\b({names})=(\d+)\b", cap, code)


RUNNER = r"""
import json, resource, sys, time, traceback, warnings
warnings.simplefilter("ignore")
results = {}
for name, code in json.load(open(sys.argv[1])).items():
    t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_utime
    try:
        exec(compile(code, name, "exec"), {"__name__": "__main__"})
        results[name] = {"ok": True}
    except BaseException:
        results[name] = {"ok": False, "error": traceback.format_exc()[-3000:]}
    results[name]["seconds"] = round(time.perf_counter() - t0, 1)
    results[name]["cpu_seconds"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_utime - c0, 1)
json.dump(results, open(sys.argv[2], "w"))
"""


def test_examples_run(tmp_path):
    (tmp_path / "runner.py").write_text(RUNNER)
    procs = []
    for i, group in enumerate(RUNNABLE):
        programs = {}
        for page in group:
            blocks = python_blocks(DOCS / page)
            assert blocks, f"{page} has no python example"
            programs[page] = shrink("\n".join(blocks))
        (tmp_path / f"programs-{i}.json").write_text(json.dumps(programs))
        with open(tmp_path / f"log-{i}.txt", "w") as log:  # a file: no pipe to fill
            procs.append(
                subprocess.Popen(
                    [sys.executable, "runner.py", f"programs-{i}.json", f"results-{i}.json"],
                    cwd=tmp_path,
                    env=_env(XLA_FLAGS=FAST_COMPILE),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    results = {}
    for i, proc in enumerate(procs):
        proc.wait(timeout=600)
        log = (tmp_path / f"log-{i}.txt").read_text()
        assert proc.returncode == 0, log[-4000:]
        results.update(json.loads((tmp_path / f"results-{i}.json").read_text()))
    failed = {k: v["error"] for k, v in results.items() if not v["ok"]}
    assert not failed, "\n\n".join(f"{k}:\n{v}" for k, v in failed.items())
    assert sorted(results) == sorted(PAGES)
