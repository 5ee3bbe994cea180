"""The command line: one-line errors and a non-zero exit for bad input to every
subcommand, outputs that carry their settings and never overwrite earlier results."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from click.testing import CliRunner

import dmftjax
from dmftjax.cli import main

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["demo", "predict", "simulate", "fixed-point", "spectral", "sweep", "tune"]
# tiny sizes for the runs that succeed
TINY = ["--steps", "6", "--samples", "64", "-q"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, code=None):
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error"), lines[0]
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    return lines[0]


@pytest.fixture
def unwritable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return blocker / "results"  # a folder can't be made under a file (even as root)


def _bad_cases(tmp_path, unwritable):
    missing = tmp_path / "nope.toml"
    malformed = tmp_path / "bad.toml"
    malformed.write_text("alpha = = 3\n[predict\n")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("alfa = 3.0\n")
    return {
        "unknown option": ["--no-such-option", "1"],
        "negative alpha": ["--alpha", "-1"],
        "missing config": ["--config", missing],
        "malformed TOML": ["--config", malformed],
        "unknown setting": ["--config", unknown],
        "unwritable output": ["--out", unwritable],
    }


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_input_is_one_line(command, tmp_path, unwritable):
    for case, args in _bad_cases(tmp_path, unwritable).items():
        if command == "sweep" and case == "negative alpha":
            args = ["--alpha", "-1,2"]
        if command == "sweep" and case == "unwritable output":
            args = ["--engine", "spectral", "--preprocessing", "trimmed", "--out", unwritable]
        result = run(command, *args)
        line = assert_one_line_error(result)
        assert result.exit_code in (1, 2), (case, result.exit_code)
        if case == "negative alpha":
            assert "alpha" in line
        if case == "malformed TOML":
            assert "TOML" in line
        if case == "unwritable output":  # (or an engine missing from this build)
            assert "cannot write" in line or "not available" in line
    assert not list(tmp_path.rglob("*.json"))


@pytest.mark.parametrize(
    "args, needle",
    [
        (["predict", "--steps", "0"], "steps"),
        (["predict", "--steps", "50", "--samples", "20"], "samples"),
        (["predict", "--overlap", "2.0"], "overlap"),
        (["predict", "--lam", "nan"], "lam"),
        (["predict", "--noise", "-0.1"], "noise"),
        (["predict", "--model", "cubic"], "model"),
        (["simulate", "--dim", "1"], "dim"),
        (["simulate", "--seeds", "x"], "seeds"),
        (["sweep", "--lam", "a,b"], "grid"),
        (["sweep", "--alpha", "1:3"], "grid"),
        (["sweep", "--tau", "1,2"], "preprocessing"),
        (["sweep", "--engine", "spectral"], "preprocessing"),
        (["sweep", "--engine", "fixed-point", "--step", "0.1,0.2"], "step"),
        (["sweep", "--alpha", "log:-1:2:3"], "positive"),
        (["spectral", "--preprocessing", "trimmed", "--tau", "-1"], "tau"),
        (["tune", "--param", "gamma"], "param"),
        (["tune", "--start-value", "-1"], "start-value"),
        (["fixed-point", "--nodes", "2"], "nodes"),
        (["fixed-point", "--nodes", "5000"], "nodes"),
        (["predict", "--samples", "10000000000", "-q"], "samples"),  # refused before compiling
        (["nonsense"], "nonsense"),
    ],
)
def test_more_bad_input(args, needle, tmp_path):
    result = run(*args, "--out", tmp_path / "o")
    line = assert_one_line_error(result)
    assert needle in line.lower()
    assert not (tmp_path / "o").exists()  # a failed run leaves nothing behind
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_help_shows_a_worked_example():
    for command in COMMANDS:
        result = run(command, "--help")
        assert result.exit_code == 0
        assert "Example" in result.output and f"dmftjax {command}" in result.output
    top = run("--help")
    assert top.exit_code == 0 and "dmftjax sweep" in top.output
    assert run().exit_code == 0  # no arguments: the help


@pytest.mark.parametrize(
    "text, needle",
    [
        ("steps = 5.7\n", "steps"),  # not 5
        ("alpha = true\n", "alpha"),  # not 1.0
        ('[predict]\nsamples = "many"\n', "samples"),
        ("dim = 50\n", "not used by `dmftjax predict`"),  # simulate's setting, at top level
        ("[predict]\nnoise = {a = 1}\n", "table"),
    ],
)
def test_config_values_are_parsed_strictly(text, needle, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(text)
    line = assert_one_line_error(run("predict", "--config", cfg, "--out", tmp_path / "o"))
    assert needle in line
    assert not (tmp_path / "o").exists()


def test_sweep_refuses_options_its_engine_does_not_use_before_running(tmp_path):
    for args, needle in [
        (["--engine", "spectral", "--preprocessing", "trimmed", "--steps", "7"], "--steps"),
        (["--engine", "fixed-point", "--samples", "64"], "--samples"),
        (["--metric", "mse", "--steps", "3", "--samples", "64"], "mse"),
    ]:
        line = assert_one_line_error(run("sweep", *args, "--out", tmp_path / "o"))
        assert needle in line
        assert not (tmp_path / "o").exists()


def test_predict_from_config_writes_settings_and_never_overwrites(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        "alpha = 2.5\nnoise = 0.0\n[simulate]\ndim = 50\n[predict]\nsteps = 6\n"
        "samples = 64\nlam = 0.1\n"
    )
    out = tmp_path / "res"
    first = run("predict", "--config", cfg, "--out", out, "--seed", 3, "-q")
    assert first.exit_code == 0, first.output
    data = json.loads((out / "predict.json").read_text())
    assert data["dmftjax_version"] == dmftjax.__version__ and data["seed"] == 3
    s = data["settings"]
    assert (s["alpha"], s["lam"], s["steps"], s["samples"], s["noise"]) == (2.5, 0.1, 6, 64, 0.0)
    assert data["config_file"] == str(cfg)
    assert len(data["dmft"]["values"]["error"]) == 7 and len(data["dmft"]["stderr"]["error"]) == 7
    csv_text = (out / "predict.csv").read_text().splitlines()
    assert csv_text[0].startswith(f"# dmftjax {dmftjax.__version__}") and "seed=3" in csv_text[0]
    assert '"alpha": 2.5' in csv_text[1] and csv_text[2].startswith("t,dmft_overlap")
    assert len(csv_text) == 3 + 7
    png = (out / "predict.png").read_bytes()
    assert png.startswith(b"\x89PNG") and b"dmftjax" in png and b'"seed": 3' in png
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    # a flag wins over the file; the earlier results stay, the new ones get a new name
    second = run("predict", "--config", cfg, "--out", out, "--alpha", 3.5, "-q")
    assert second.exit_code == 0, second.output
    assert "earlier results kept" in second.output
    for name, content in before.items():
        assert (out / name).read_bytes() == content
    assert json.loads((out / "predict-1.json").read_text())["settings"]["alpha"] == 3.5

    third = run("predict", "--config", cfg, "--out", out, "--overwrite", "-q")
    assert third.exit_code == 0
    assert (out / "predict.json").read_bytes() != before["predict.json"]
    assert not list(out.glob(".*"))  # no temporary files left


def test_failed_run_leaves_earlier_results(tmp_path):
    out = tmp_path / "res"
    out.mkdir()
    (out / "predict.json").write_text("earlier")
    result = run("predict", "--steps", 40, "--samples", 30, "--out", out)
    assert_one_line_error(result)
    assert (out / "predict.json").read_text() == "earlier"
    assert sorted(p.name for p in out.iterdir()) == ["predict.json"]


@pytest.mark.skipif(
    not all(hasattr(dmftjax, n) for n in ("Trimmed", "spectral_theory")),
    reason="the spectral API is not in this build",
)
def test_sweep_command_resumes(tmp_path):
    args = [
        "sweep",
        "--engine",
        "spectral",
        "--noise",
        "0",
        "--preprocessing",
        "trimmed",
        "--alpha",
        "1,3",
        "--tau",
        "3,6",
        "--out",
        tmp_path,
        "-q",
    ]
    first = run(*args)
    assert first.exit_code == 0, first.output
    assert "4 points (4 computed" in first.output
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert data["sweep"]["axes"] == {"alpha": [1.0, 3.0], "prep": [3.0, 6.0]}
    assert len(data["sweep"]["threshold"]) == 2 and data["seed"] == 0
    again = run(*args)
    assert again.exit_code == 0 and "(0 computed, 4 read back" in again.output
    assert (tmp_path / "sweep-1.png").exists()


def test_real_subprocess():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "dmftjax", "predict", "--alpha", "-2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "alpha" in lines[0] and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_predict_long_horizon_mode_with_handoff(tmp_path):
    out = tmp_path / "long"
    res = run(
        "predict",
        "--steps",
        "120",
        "--samples",
        "400",
        "--replicas",
        "2",
        "--estimator",
        "windowed",
        "--window",
        "24",
        "--handoff",
        "0.5",
        "--alpha",
        "3",
        "--lam",
        "0.5",
        "--noise",
        "0.1",
        "--step",
        "0.05",
        "--out",
        out,
        "-q",
    )
    assert res.exit_code == 0, res.output
    data = json.loads((out / "predict.json").read_text())
    info = data["dmft"]["info"]
    assert info["estimator"] == "windowed" and info["window"] == 24
    assert info["handed_off"] and all(0 < t < 120 for t in info["handoff_at"])
    assert len(data["dmft"]["values"]["error"]) == 121


def test_momentum_sweep_from_a_spectral_start(tmp_path):
    # the seed's own two-stage algorithm, swept over the momentum from its spectral start
    args = [
        "sweep",
        "--algorithm",
        "heavy-ball",
        "--momentum",
        "0,0.5",
        "--init",
        "spectral",
        "--preprocessing",
        "mondelli-montanari",
        "--alpha",
        "3",
        "--lam",
        "0.05",
        "--step",
        "0.02",
        "--steps",
        "8",
        "--samples",
        "400",
        "--out",
        tmp_path,
        "-q",
    ]
    res = run(*args)
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert data["sweep"]["axes"] == {
        "alpha": [3.0],
        "lam": [0.05],
        "algorithm.momentum": [0.0, 0.5],
    }
    err = np.asarray(data["sweep"]["values"]["error"], dtype=float).ravel()
    assert err.size == 2 and np.all(np.isfinite(err)) and err[0] != err[1]
    # the momentum-free point is gradient descent from the same start and key
    gd = run(
        "predict",
        "--init",
        "spectral",
        "--preprocessing",
        "mondelli-montanari",
        "--alpha",
        "3",
        "--lam",
        "0.05",
        "--step",
        "0.02",
        "--steps",
        "8",
        "--samples",
        "400",
        "--replicas",
        "2",
        "--out",
        tmp_path / "gd",
        "-q",
    )
    assert gd.exit_code == 0, gd.output
    gd_err = json.loads((tmp_path / "gd" / "predict.json").read_text())["dmft"]["values"]["error"]
    assert err[0] == pytest.approx(gd_err[-1], rel=1e-9)
    bad = run("sweep", "--momentum", "0,0.5", "--steps", "5", "--samples", "64", "-q")
    assert "heavy-ball or nesterov" in assert_one_line_error(bad)
    bad = run("sweep", "--init", "spectral", "--steps", "5", "--samples", "64", "-q")
    assert "preprocessing" in assert_one_line_error(bad)


def test_tune_the_momentum_of_heavy_ball(tmp_path):
    # dmftjax tune --param momentum: the tuned value is the library's tune_algorithm on
    # the same key, and the figure's grid is a sweep over algorithm.momentum
    args = [
        "tune",
        "--param",
        "momentum",
        "--algorithm",
        "heavy-ball",
        "--momentum",
        "0.3",
        "--loss",
        "square",
        "--model",
        "linear",
        "--noise",
        "0.5",
        "--lam",
        "0",
        "--step",
        "0.05",
        "--steps",
        "20",
        "--samples",
        "300",
        "--iterations",
        "5",
        "--grid-points",
        "4",
        "--out",
        tmp_path,
        "-q",
    ]
    res = run(*args)
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "tune.json").read_text())
    problem = dmftjax.Problem(dmftjax.LinearModel(0.5), dmftjax.SquareLoss(), alpha=3.0)
    lib = dmftjax.tune_algorithm(
        problem,
        dmftjax.HeavyBall(0.05, 0.3, 20),
        dmftjax.InformedInit(0.5, 1.0),
        field="momentum",
        num_samples=300,
        key=jax.random.key(0),
        steps=5,
        optimizer=optax.adam(0.05),
        progress=False,
    )
    assert data["tuned"] == pytest.approx(float(jax.nn.sigmoid(lib.params)), rel=1e-9)
    assert 0 < data["tuned"] < 1 and len(data["grid"]) == 4 and max(data["grid"]) < 1
    bad = run("tune", "--param", "momentum", "--steps", "5", "-q")
    assert "heavy-ball or nesterov" in assert_one_line_error(bad)


def test_a_second_process_loads_the_compiled_solver_from_the_cache(tmp_path):
    # DMFTJAX_CACHE_DIR: the first `predict` fills the cache, a second process of the same
    # shape finds it (JAX's persistent cache) and computes the same numbers
    cache = tmp_path / "cache"
    env = dict(os.environ, DMFTJAX_CACHE_DIR=str(cache), JAX_PLATFORMS="cpu")
    args = [
        sys.executable,
        "-m",
        "dmftjax",
        "predict",
        "--steps",
        "5",
        "--samples",
        "64",
        "--replicas",
        "2",
        "-q",
    ]
    first = subprocess.run(
        args + ["--out", str(tmp_path / "a")], env=env, capture_output=True, text=True, timeout=600
    )
    assert first.returncode == 0, first.stderr[-2000:]
    entries = {p.name for p in cache.iterdir()}
    assert entries  # the solver's executable (and more) were written
    second = subprocess.run(
        args + ["--out", str(tmp_path / "b")], env=env, capture_output=True, text=True, timeout=600
    )
    assert second.returncode == 0, second.stderr[-2000:]
    assert {p.name for p in cache.iterdir()} == entries  # nothing new to compile and store
    values = [
        json.loads((tmp_path / d / "predict.json").read_text())["dmft"]["values"]
        for d in ("a", "b")
    ]
    assert values[0] == values[1]
    # turned off by the empty string; an unusable directory is a one-line error
    assert dmftjax.compilation_cache_dir() is None  # conftest: DMFTJAX_CACHE_DIR=""
    (tmp_path / "file").write_text("x")
    bad = subprocess.run(
        args + ["--out", str(tmp_path / "c")],
        env=dict(env, DMFTJAX_CACHE_DIR=str(tmp_path / "file" / "sub")),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bad.returncode != 0 and "DMFTJAX_CACHE_DIR" in bad.stderr


def test_the_spectral_figure_names_the_preprocessing_as_used():
    # the default threshold (tau = 4 for trimmed) used to be drawn as "tau=None"
    from types import SimpleNamespace

    from dmftjax.cli import _spectral_figure

    p = dict(
        model="phase-retrieval", noise=0.0, preprocessing="trimmed", tau=None, alpha=3.0, dim=100
    )
    fig = _spectral_figure([2.0, 3.0], [0.2, 0.4], 1.5, p, SimpleNamespace(cosine2=0.4), None)
    assert fig.axes[0].get_title() == "phase-retrieval, noise=0.0, Trimmed(tau=4.0)"


def test_the_nodes_bound_is_the_library_bound():
    from dmftjax._fixed_point import MAX_NODES

    param = next(p for p in main.commands["fixed-point"].params if p.name == "nodes")
    assert param.type.max == MAX_NODES


def test_outputs_follow_the_umask(tmp_path):
    import os

    from dmftjax.cli import _Outputs

    old = os.umask(0o022)
    try:
        out = _Outputs(tmp_path / "res", "x", ["json"], overwrite=False)
        out.json({"a": 1})
        (path,) = out.commit()
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600


def test_predict_with_minibatch_sgd_and_langevin(tmp_path):
    common = ["--step", "0.02", "--steps", "10", "--samples", "300", "--replicas", "2", "-q"]

    def final(name, *extra):
        res = run("predict", *extra, *common, "--out", tmp_path / name)
        assert res.exit_code == 0, res.output
        data = json.loads((tmp_path / name / "predict.json").read_text())
        return data["dmft"]["values"]["error"][-1]

    gd = final("gd")
    sgd = final("bernoulli", "--algorithm", "sgd", "--batch-fraction", "0.5")
    # in the limit a fixed-size batch is Bernoulli per row: the same DMFT on the same key
    fixed = final("fixed", "--algorithm", "sgd", "--batch-fraction", "0.5", "--sampling", "fixed")
    shuffled = final(
        "reshuffle", "--algorithm", "sgd", "--batch-fraction", "0.5", "--sampling", "reshuffle"
    )
    hot = final("langevin", "--algorithm", "langevin", "--temperature", "0.05")
    assert sgd == fixed and len({gd, sgd, shuffled, hot}) == 4
    assert hot > gd  # the kicks add to the norm, hence to the error
    for args, msg in [
        (["--algorithm", "sgd"], "needs --batch-fraction"),
        (["--batch-fraction", "0.5"], "need --algorithm sgd"),
        (["--algorithm", "langevin"], "needs --temperature"),
        (["--temperature", "0.1"], "needs --algorithm langevin"),
        (["--algorithm", "sgd", "--batch-fraction", "0.3", "--sampling", "reshuffle"], "integer"),
    ]:
        assert msg in assert_one_line_error(run("predict", *args, *common)), args
    bad = run("fixed-point", "--algorithm", "langevin", "--temperature", "0.1", "-q")
    assert "no fixed point" in assert_one_line_error(bad)


def test_gradient_flow_on_physical_time(tmp_path):
    common = ["--algorithm", "gradient-flow", "--step", "0.05", "--steps", "8", "-q"]
    res = run("predict", *common, "--samples", "200", "--replicas", "2", "--out", tmp_path / "p")
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "p" / "predict.json").read_text())["dmft"]
    np.testing.assert_allclose(data["times"], 0.05 * np.arange(9))
    assert data["info"]["richardson"] and data["info"]["dt"] == [0.05, 0.025]
    header = [
        line for line in (tmp_path / "p" / "predict.csv").read_text().splitlines() if line[0] != "#"
    ][0]
    assert header.startswith("t,time,dmft_overlap")
    res = run("simulate", *common, "--dim", "60", "--seeds", "2", "--out", tmp_path / "s")
    assert res.exit_code == 0, res.output
    sim = json.loads((tmp_path / "s" / "simulate.json").read_text())
    assert np.isclose(sim["simulation"]["times"][-1], 0.4)
    bad = run("predict", *common, "--kernels", "--samples", "200")
    assert "without kernels" in assert_one_line_error(bad)
