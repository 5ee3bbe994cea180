"""One sweep shared by two processes through JAX's own multi-process runtime
(`jax.distributed`, two local CPU processes here, one device each): the grid equals a
single-process run bit for bit, and a sweep whose processes were killed resumes with
every point computed and stored exactly once."""

import json
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest
from test_sweep import GRID, SIZES, _env, _tiny

import dmftjax as dj

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    mode, port, rank, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                               process_id=rank, initialization_timeout=120)
    import numpy as np
    import dmftjax as dj
    sys.path.insert(0, os.environ["DMFTJAX_TESTS"])
    from test_sweep import GRID, SIZES, _tiny

    problem, alg, init = _tiny("informed")

    def hook(number, done):  # in "kill" mode, rank 1 dies the hard way after one chunk
        if mode == "kill" and rank == 1:
            os.kill(os.getpid(), signal.SIGKILL)

    r = dj.sweep(problem, alg, init, **GRID, **SIZES, key=jax.random.key(7), out=out,
                 after_chunk=hook)
    assert r.info["processes"] == 2 and r.info["process"] == rank
    np.savez(os.path.join(out, f"values-{rank}.npz"), computed=r.computed,
             **r.values, **{"curve_" + k: v for k, v in r.curves.items()})
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(script, mode, out):
    port = _free_port()
    env = _env(1)
    return [
        subprocess.Popen(
            [sys.executable, str(script), mode, str(port), str(rank), str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]


def _finish(procs, timeout=300):
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err[-3000:]


def _stored_indices(folder):
    return np.concatenate([np.load(f)["indices"] for f in sorted(folder.glob("chunk-*.npz"))])


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    path = tmp_path_factory.mktemp("distributed") / "two_process_sweep.py"
    path.write_text(SCRIPT)
    return path


@pytest.fixture(scope="module")
def reference():
    problem, alg, init = _tiny("informed")
    return dj.sweep(problem, alg, init, **GRID, **SIZES, key=jax.random.key(7))


def _assert_equal(values_file, reference):
    got = np.load(values_file)
    for k, v in reference.values.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)
    for k, v in reference.curves.items():
        np.testing.assert_array_equal(got["curve_" + k], v, err_msg=k)


def test_two_processes_equal_one_bit_for_bit(script, tmp_path, reference):
    out = tmp_path / "together"
    _finish(_launch(script, "values", out))
    (folder,) = out.glob("sweep-*")
    # each process wrote its own chunks: 6 points in blocks of batch_size = 1, dealt 3 + 3
    names = sorted(f.name for f in folder.glob("chunk-*.npz"))
    assert sum(n.endswith("-p000.npz") for n in names) == 3
    assert sum(n.endswith("-p001.npz") for n in names) == 3
    assert sorted(_stored_indices(folder).tolist()) == list(range(6))
    computed = [int(np.load(out / f"values-{r}.npz")["computed"]) for r in (0, 1)]
    assert computed == [3, 3]
    for rank in (0, 1):  # both processes return the whole grid
        _assert_equal(out / f"values-{rank}.npz", reference)


def test_killed_two_process_sweep_resumes(script, tmp_path, reference):
    out = tmp_path / "killed"
    p0, p1 = _launch(script, "kill", out)
    p1.communicate(timeout=300)
    assert p1.returncode == -signal.SIGKILL  # rank 1 died after its first chunk
    time.sleep(1.0)
    if p0.poll() is None:  # rank 0 waits for its dead peer: kill it as well
        p0.send_signal(signal.SIGKILL)
    p0.communicate(timeout=60)
    (folder,) = out.glob("sweep-*")
    stored = _stored_indices(folder)
    assert 1 <= len(stored) < 6 and len(set(stored.tolist())) == len(stored)
    assert not list(out.glob("values-*.npz"))

    # the same command in two processes again: only the missing points, each once
    _finish(_launch(script, "values", out))
    computed = [int(np.load(out / f"values-{r}.npz")["computed"]) for r in (0, 1)]
    assert sum(computed) == 6 - len(stored)
    assert sorted(_stored_indices(folder).tolist()) == list(range(6))
    for rank in (0, 1):
        _assert_equal(out / f"values-{rank}.npz", reference)
    # and a single process reads the two processes' folder back unchanged
    problem, alg, init = _tiny("informed")
    again = dj.sweep(problem, alg, init, **GRID, **SIZES, key=jax.random.key(7), out=out)
    assert again.computed == 0
    for k, v in reference.values.items():
        np.testing.assert_array_equal(again.values[k], v, err_msg=k)


def test_a_multi_process_sweep_needs_a_folder_and_its_own_devices(monkeypatch):
    problem, alg, init = _tiny("informed")
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with pytest.raises(ValueError, match="needs out="):
        dj.sweep(problem, alg, init, **GRID, **SIZES, key=jax.random.key(7))
    monkeypatch.undo()

    class Foreign:  # a device of another process
        process_index = 1

    from dmftjax._sweep import _check_devices

    monkeypatch.setattr(jax, "Device", Foreign)
    with pytest.raises(ValueError, match="other processes"):
        _check_devices([Foreign()])


def test_a_resume_across_versions_warns(tmp_path, monkeypatch):
    from dmftjax import _sweep

    problem = dj.Problem(dj.LinearModel(0.5), dj.SquareLoss(), alpha=3.0)
    kw = dict(
        engine="fixed_point",
        alpha=[2.0, 3.0],
        lam=[0.1],
        out=tmp_path,
        progress=False,
        batch_size=1,
    )
    old = '{"dmftjax": "0.0.1", "jax": "0.4.35", "jaxlib": "0.4.35"}'
    with monkeypatch.context() as m:
        m.setattr(_sweep, "_code_versions", lambda: old)
        first = dj.sweep(problem, **kw)
    manifest = json.loads((first.folder / "manifest.json").read_text())
    assert manifest["versions"]["dmftjax"] == "0.0.1"
    assert {c["versions"]["dmftjax"] for c in manifest["chunks"]} == {"0.0.1"}
    assert manifest["provenance"]["command_line"]
    sorted(first.folder.glob("chunk-*.npz"))[-1].unlink()  # one point to recompute
    with pytest.warns(RuntimeWarning, match=r"1 of the points stored in .*0\.0\.1"):
        again = dj.sweep(problem, **kw)
    assert again.computed == 1
    manifest = json.loads((first.folder / "manifest.json").read_text())
    assert manifest["versions"]["dmftjax"] == dj.__version__
    assert sorted(c["versions"]["dmftjax"] for c in manifest["chunks"]) == sorted(
        ["0.0.1", dj.__version__]
    )
