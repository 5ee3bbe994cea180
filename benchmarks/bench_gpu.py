"""Accelerator benchmark: DMFT and simulator at large M, T and d on whatever device JAX
finds (GPU, TPU or CPU): the exact (tangent) mode, the long-horizon (windowed) mode and
integration by parts up to T = 1000, M = 1e5 samples in one replica. One short command:

    python benchmarks/bench_gpu.py            # writes benchmarks/results/gpu.json
    python benchmarks/bench_gpu.py --quick    # a smoke test at small sizes (any machine)

Times are medians over repeats after compilation; peak device memory where the backend
reports it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import dmftjax as dj  # noqa: E402
from dmftjax._dmft import _replica  # noqa: E402
from dmftjax._simulate import simulate_one  # noqa: E402
from dmftjax._validate import as_arrays  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _common import fmt, timeit, write  # noqa: E402

PROBLEM = dj.Problem(
    dj.PhaseRetrieval(0.1), dj.WirtingerLoss(), alpha=3.0, regulariser=dj.Ridge(0.05)
)
INIT = dj.InformedInit(0.5, 1.0)


def device_memory():
    try:
        stats = jax.devices()[0].memory_stats() or {}
        return stats.get("peak_bytes_in_use", 0) / 2**30
    except Exception:
        return None


def main():
    dev = jax.devices()[0]
    print(f"device: {dev.platform} {getattr(dev, 'device_kind', '')} x {jax.device_count()}")
    out = {"device": f"{dev.platform} {getattr(dev, 'device_kind', '')}", "rows": []}
    quick = "--quick" in sys.argv  # a smoke test of the script itself, at small sizes
    grid = [
        (100, 20000, "tangent"),
        (100, 100000, "tangent"),
        (200, 100000, "windowed"),
        (1000, 25000, "windowed"),
        (1000, 100000, "windowed"),
        (200, 100000, "ibp"),
        (1000, 100000, "ibp"),
    ]
    sims = [(2000, 8), (8000, 4), (16000, 2)]
    if quick:
        grid = [(min(s, 60), 1000, e) for s, _, e in grid[:3]]
        sims = [(200, 2)]
    for steps, num, est in grid:
        p, a, i = as_arrays((PROBLEM, dj.GradientDescent(0.03, steps), INIT))
        engine = (est, 40, None)  # the long-horizon mode's default window
        f = jax.jit(
            lambda k, p=p, a=a, i=i, num=num, e=engine: _replica(p, a, i.dmft_start(p), k, num, e)
        )
        t = timeit(lambda f=f: f(jax.random.key(0)), 2)
        out["rows"].append(
            dict(
                kind="dmft", steps=steps, samples=num, estimator=est, time=t, mem_gb=device_memory()
            )
        )
        print(f"DMFT {est:8s} T={steps:5d} M={num:7d} {fmt(t)}", flush=True)
    for dim, seeds in sims:
        p, a, i = as_arrays((PROBLEM, dj.GradientDescent(0.05, 100), INIT))
        n = 3 * dim
        one = lambda k, p=p, a=a, i=i, dim=dim, n=n: simulate_one(p, a, i, dim, n, k)  # noqa: E731
        f = jax.jit(jax.vmap(one))
        keys = jax.random.split(jax.random.key(0), seeds)
        t = timeit(lambda f=f, keys=keys: f(keys), 2)
        out["rows"].append(
            dict(kind="simulation", dim=dim, seeds=seeds, steps=100, time=t, mem_gb=device_memory())
        )
        print(f"simulation d={dim:6d} seeds={seeds} T=100 {fmt(t)}", flush=True)
    write("gpu_quick.json" if quick else "gpu.json", out)


if __name__ == "__main__":
    main()
