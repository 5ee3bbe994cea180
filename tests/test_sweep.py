"""Sweeps: sharding does not change a bit, an interrupted sweep resumes and computes
every point exactly once, bad input is refused, and the phase diagram draws."""

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

import dmftjax as dj
from dmftjax import _sweep

ROOT = Path(__file__).resolve().parents[1]

# The tiny DMFT sweep every test here uses (`_tiny`, GRID, SIZES below): 3 x 2 points,
# 4 steps, 32 samples, 2 replicas, run in a child process with its own device count.
SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import dmftjax as dj
    sys.path.insert(0, os.environ["DMFTJAX_TESTS"])
    from test_sweep import GRIDS, SIZES, _tiny as make

    if __name__ == "__main__":
        mode, target, start = sys.argv[1], sys.argv[2], sys.argv[3]
        problem, alg, init = make(start)
        GRID = GRIDS[start]
        if mode == "values":  # write the values to an npz file
            r = dj.sweep(problem, alg, init, **GRID, **SIZES, key=jax.random.key(7))
            np.savez(target, devices=len(r.info["devices"]), chunk_len=r.info["chunk_len"],
                     **r.values, **{"curve_" + k: v for k, v in r.curves.items()})
        else:  # kill this process the hard way once the first chunk is on disk
            def die(number, done):
                os.kill(os.getpid(), signal.SIGKILL)
            dj.sweep(problem, alg, init, **GRID, **SIZES, key=jax.random.key(7), out=target,
                     after_chunk=die)
""")


def _env(devices: int | None = None):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["JAX_PLATFORMS"] = "cpu"
    env["DMFTJAX_TESTS"] = str(Path(__file__).resolve().parent)  # the script imports _tiny
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
    if devices is not None:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    env["XLA_FLAGS"] = " ".join(flags)
    return env


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep") / "tiny_sweep.py"
    path.write_text(SCRIPT)
    return path


def _tiny(start="informed"):
    problem = dj.Problem(
        dj.PhaseRetrieval(0.1), dj.WirtingerLoss(), alpha=3.0, regulariser=dj.Ridge(0.05)
    )
    init = (
        dj.InformedInit(0.5, 1.0)
        if start == "informed"
        else dj.SpectralInit(dj.MondelliMontanari())
    )
    return problem, dj.GradientDescent(0.05, 4), init


# the spectral start: the seed's two-stage algorithm over (alpha, step)
GRIDS = {
    "informed": dict(alpha=[2.0, 3.0, 4.0], lam=[0.0, 0.1]),
    "spectral": dict(alpha=[2.0, 3.0, 4.0], step_size=[0.02, 0.05]),
}
GRID = GRIDS["informed"]
SIZES = dict(num_samples=32, num_replicas=2, batch_size=1, progress=False)


@pytest.mark.parametrize("start", ["informed", "spectral"])
def test_one_and_four_devices_agree_bit_for_bit(script, tmp_path, start):
    """The same sweep on 1 and on 4 (host) devices: identical arrays, not just close."""
    procs = {
        n: subprocess.Popen(
            [sys.executable, str(script), "values", str(tmp_path / f"{n}.npz"), start],
            env=_env(n),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in (1, 4)
    }
    for n, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    one, four = np.load(tmp_path / "1.npz"), np.load(tmp_path / "4.npz")
    assert int(one["devices"]) == 1 and int(four["devices"]) == 4
    assert int(four["chunk_len"]) == 4 * int(one["chunk_len"])  # really sharded 4 ways
    keys = [k for k in one.files if k not in ("devices", "chunk_len")]
    assert set(keys) == set(four.files) - {"devices", "chunk_len"}
    assert "curve_error" in keys and one["curve_error"].shape == (3, 2, 5)
    for k in keys:
        np.testing.assert_array_equal(one[k], four[k], err_msg=k)
    assert np.all(np.isfinite(one["error"]))


@pytest.mark.parametrize("start", ["informed", "spectral"])
def test_killed_sweep_resumes_every_point_exactly_once(script, tmp_path, start):
    out = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, str(script), "kill", str(out), start],
        env=_env(1),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0  # killed by SIGKILL after the first chunk
    (folder,) = out.glob("sweep-*")
    first = sorted(folder.glob("chunk-*.npz"))
    assert len(first) == 1
    assert not list(folder.glob("*.tmp"))  # nothing half-written left behind
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["done"] == 1 and not manifest["complete"]

    problem, alg, init = _tiny(start)
    GRID = GRIDS[start]
    resumed = dj.sweep(problem, alg, init, **GRID, **SIZES, key=jax.random.key(7), out=out)
    assert resumed.folder == folder
    assert resumed.computed == 5  # only the missing points
    indices = np.concatenate([np.load(f)["indices"] for f in sorted(folder.glob("chunk-*.npz"))])
    assert sorted(indices.tolist()) == list(range(6))  # each point stored exactly once
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["complete"] and manifest["done"] == 6

    fresh = dj.sweep(problem, alg, init, **GRID, **SIZES, key=jax.random.key(7))
    for k, v in fresh.values.items():
        np.testing.assert_array_equal(resumed.values[k], v, err_msg=k)
    again = dj.sweep(problem, alg, init, **GRID, **SIZES, key=jax.random.key(7), out=out)
    assert again.computed == 0
    np.testing.assert_array_equal(again.curves["error"], fresh.curves["error"])


class Boom(Exception):
    pass


def test_exception_after_chunk_k_then_resume(tmp_path):
    problem, alg, init = _tiny()
    kw = dict(**GRID, **dict(SIZES, batch_size=2), key=jax.random.key(3), out=tmp_path)

    def fail_after_second(number, done):
        if number == 1:
            raise Boom

    with pytest.raises(Boom):
        dj.sweep(problem, alg, init, after_chunk=fail_after_second, **kw)
    (folder,) = tmp_path.glob("sweep-*")
    assert len(list(folder.glob("chunk-*.npz"))) == 2
    calls = []
    res = dj.sweep(problem, alg, init, after_chunk=lambda n, d: calls.append((n, d)), **kw)
    assert res.computed == 2 and calls == [(2, 6)]
    indices = np.concatenate([np.load(f)["indices"] for f in folder.glob("chunk-*.npz")])
    assert np.array_equal(np.sort(indices), np.arange(6))
    assert res.values["error"].shape == (3, 2) and np.all(np.isfinite(res.values["error"]))
    # a different setting is a different sweep (another hash, another folder)
    other = dj.sweep(problem, alg, init, **dict(kw, key=jax.random.key(4)))
    assert other.hash != res.hash and other.computed == 6
    assert len(list(tmp_path.glob("sweep-*"))) == 2


def test_spectral_engine_matches_spectral_theory():
    problem = dj.Problem(dj.PhaseRetrieval(0.0), dj.WirtingerLoss(), alpha=3.0)
    res = dj.sweep(
        problem,
        engine="spectral",
        preprocessing=dj.Trimmed(4.0),
        alpha=[2.0, 4.0],
        prep=[4.0, 8.0],
        progress=False,
        threshold=False,
    )
    assert res.settings["prep_field"] == "tau"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for i, a in enumerate([2.0, 4.0]):
            for j, tau in enumerate([4.0, 8.0]):
                p = dj.Problem(dj.PhaseRetrieval(0.0), dj.WirtingerLoss(), alpha=a)
                th = dj.spectral_theory(p, dj.Trimmed(tau))
                np.testing.assert_allclose(
                    res.values["cosine2"][i, j], float(th.cosine2), rtol=1e-9, atol=1e-12
                )
    assert res.values["cosine2"][1, 0] > 0.05  # alpha = 4 is above the threshold of tau = 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(alpha=[1.0, -2.0]), "alpha"),
        (dict(alpha=[]), "empty"),
        (dict(lam=[-0.1]), "lam"),
        (dict(step_size=[0.0]), "step_size"),
        (dict(alpha=[1.0, float("nan")]), "non-finite"),
        (dict(), "nothing to sweep"),
        (dict(alpha=[1.0], prep=[1.0, 2.0]), "preprocessing"),
        (dict(alpha=[1.0], engine="magic"), "engine"),
        (dict(alpha=[1.0], num_samples=5), "num_samples"),
        (dict(alpha=[1.0], key=None), "key"),
        (dict(alpha=[1.0], engine="spectral"), "preprocessing"),
        (dict(alpha=[1.0], batch_size=0), "batch_size"),
    ],
)
def test_bad_sweeps_raise(kwargs, match):
    problem, alg, init = _tiny()
    kw = dict(num_samples=32, key=jax.random.key(0), progress=False)
    kw.update(kwargs)
    with pytest.raises(ValueError, match=match):
        dj.sweep(problem, alg, init, **kw)


def test_spectral_start_sweep_by_paths_equals_solve_dmft():
    # any field by its path: the momentum of heavy ball and the preprocessing's parameter
    # of the spectral start (Mondelli-Montanari tuned to an alpha); each point is
    # solve_dmft's number on the same key
    problem, _, _ = _tiny()
    alg = dj.HeavyBall(0.02, 0.0, 6)
    init = dj.SpectralInit(dj.MondelliMontanari(3.0))
    key = jax.random.key(4)
    res = dj.sweep(
        problem,
        alg,
        init,
        axes={"algorithm.momentum": [0.0, 0.5], "init.preprocessing.alpha": [3.0, 5.0]},
        num_samples=200,
        num_replicas=2,
        key=key,
        progress=False,
    )
    assert res.values["error"].shape == (2, 2)
    from dmftjax._sweep import sweep_quantities

    assert set(res.values) == set(sweep_quantities("dmft"))
    for i, beta in enumerate([0.0, 0.5]):
        for j, tuned in enumerate([3.0, 5.0]):
            traj = dj.solve_dmft(
                problem,
                dj.HeavyBall(0.02, beta, 6),
                dj.SpectralInit(dj.MondelliMontanari(tuned)),
                num_samples=200,
                num_replicas=2,
                key=key,
            )
            np.testing.assert_allclose(res.values["error"][i, j], traj.error[-1], rtol=1e-10)
    # the phase diagram of this sweep over two paths draws, with its axes named
    from dmftjax.plotting import plot_phase_diagram

    fig = plot_phase_diagram(res, "error", x="algorithm.momentum", y="init.preprocessing.alpha")
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("algorithm.momentum") and ax.get_images() + ax.collections
    with pytest.raises(ValueError, match="momentum"):
        dj.sweep(
            problem,
            alg,
            init,
            axes={"algorithm.momentum": [0.5, 1.2]},
            num_samples=200,
            key=key,
            progress=False,
        )
    with pytest.raises(ValueError, match="no field"):
        dj.sweep(
            problem,
            alg,
            init,
            axes={"algorithm.beta": [0.5]},
            num_samples=200,
            key=key,
            progress=False,
        )


def test_a_sweep_over_the_method_alone_from_a_spectral_start():
    # only the algorithm's fields vary: the start's closed form is then computed on
    # constants inside the trace, whose results are still traced (the outlier check
    # raised TracerBoolConversionError; the README tour's line)
    problem, _, _ = _tiny()
    init, key = dj.SpectralInit(dj.MondelliMontanari()), jax.random.key(5)
    res = dj.sweep(
        problem,
        dj.HeavyBall(0.02, 0.0, 6),
        init,
        axes={"algorithm.momentum": [0.0, 0.5]},
        num_samples=200,
        num_replicas=2,
        key=key,
        progress=False,
    )
    for i, beta in enumerate([0.0, 0.5]):
        traj = dj.solve_dmft(
            problem, dj.HeavyBall(0.02, beta, 6), init, num_samples=200, num_replicas=2, key=key
        )
        np.testing.assert_allclose(res.values["error"][i], traj.error[-1], rtol=1e-10)


def test_phase_diagram_draws(tmp_path):
    from dmftjax.plotting import plot_phase_diagram, plot_sweep_curves

    axes = {"alpha": np.array([1.0, 2.0, 3.0]), "lam": np.array([0.0, 0.1])}
    values = {"error": np.array([[0.9, 0.8], [0.5, 0.4], [0.1, 0.2]])}
    curves = {"error": np.ones((3, 2, 5)), "error_se": np.zeros((3, 2, 5))}
    res = _sweep.SweepResult(
        axes=axes, values=values, curves=curves, settings={}, hash="x", threshold=1.5
    )
    fig = plot_phase_diagram(res, "error")
    assert any("weak recovery" in t.get_text() for t in fig.axes[0].get_legend().get_texts())
    fig.savefig(tmp_path / "pd.png")
    plot_phase_diagram(res, "error", y=None, where={"lam": 0.1})
    plot_sweep_curves(res, "error", along="alpha")
    with pytest.raises(ValueError, match="not in the sweep"):
        plot_phase_diagram(res, "cosine")
    header, rows = res.rows()
    assert header == ["alpha", "lam", "error"] and len(rows) == 6 and rows[1] == [1.0, 0.1, 0.8]


def test_common_random_numbers_share_the_noise_across_points():
    # Two identical grid points: the same numbers with common random numbers (the
    # default), different draws without; and the noise of a difference between two
    # close points is far smaller than the noise of each point.
    problem, alg, init = _tiny()
    kw = dict(
        lam=[0.05, 0.05, 0.06],
        num_samples=64,
        num_replicas=2,
        batch_size=3,
        progress=False,
        key=jax.random.key(5),
    )
    common = dj.sweep(problem, alg, init, **kw).values["error"]
    independent = dj.sweep(problem, alg, init, common_random_numbers=False, **kw).values["error"]
    assert common[0] == common[1]
    assert independent[0] != independent[1]
    assert abs(common[2] - common[0]) < abs(independent[1] - independent[0])


def test_windowed_sweep_point_equals_solve_dmft():
    # With common random numbers a point uses the sweep's key itself, as solve_dmft does,
    # so the long-horizon mode gives the same number both ways.
    problem, alg, init = _tiny()
    alg = dj.GradientDescent(0.05, 30)
    key = jax.random.key(9)
    res = dj.sweep(
        problem,
        alg,
        init,
        lam=[0.05],
        num_samples=200,
        num_replicas=2,
        estimator="windowed",
        window=8,
        key=key,
        progress=False,
    )
    traj = dj.solve_dmft(
        problem, alg, init, num_samples=200, num_replicas=2, key=key, estimator="windowed", window=8
    )
    np.testing.assert_allclose(res.values["error"][0], traj.error[-1], rtol=1e-10)


def test_a_resumed_sweep_removes_the_temporary_files_of_a_killed_run(tmp_path):
    # a run killed while writing leaves `.<name>.<pid>.tmp`; the next run on the folder
    # removes those of dead processes and leaves a live one's alone
    problem = dj.Problem(dj.LinearModel(0.5), dj.SquareLoss(), alpha=3.0)
    kw = dict(engine="fixed_point", alpha=[2.0, 3.0], lam=[0.1], out=tmp_path, progress=False)
    first = dj.sweep(problem, **kw)
    dead = first.folder / ".manifest.json.999999999.tmp"
    live = first.folder / f".chunk.npz.{os.getppid()}.tmp"
    dead.write_text("half")
    live.write_text("under way")
    again = dj.sweep(problem, **kw)
    assert not dead.exists() and live.exists()
    np.testing.assert_array_equal(again.values["error"], first.values["error"])
    # what the CLI checks a --metric against is what a sweep stores
    from dmftjax._sweep import sweep_quantities

    assert set(first.values) == set(sweep_quantities("fixed-point"))
