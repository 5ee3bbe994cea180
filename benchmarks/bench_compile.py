"""Compile time, and what JAX's persistent compilation cache saves a new process.

For `solve_dmft` (Wirtinger flow, alpha 3, T = 100, 2 x 4000 samples, tangent estimator)
and the simulator (d = 500, 4 seeds, T = 100): a fresh cache directory; process 1 pays
the compilation (first call minus a compiled call); process 2, same shapes, loads the
executables from the cache. Prints, per engine and process: import time, first call,
compiled call (median [min, max] of 3), and the compile (or cache-load) overhead.
Writes `benchmarks/results/compile.json`.

    python benchmarks/bench_compile.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from _common import write

CHILD = r"""
import json, statistics, sys, time
t0 = time.perf_counter()
import jax
jax.config.update("jax_enable_x64", True)
import dmftjax as dj
dj.enable_compilation_cache(sys.argv[1])
out = {"import_s": time.perf_counter() - t0}
p = dj.Problem(dj.PhaseRetrieval(0.1), dj.WirtingerLoss(), alpha=3.0, regulariser=dj.Ridge(0.05))
alg, init = dj.GradientDescent(0.03, 100), dj.InformedInit(0.5, 1.0)
calls = {
    "dmft": lambda: dj.solve_dmft(p, alg, init, num_samples=4000, num_replicas=2,
                                  key=jax.random.key(0)).error,
    "simulate": lambda: dj.simulate(p, alg, init, dim=500, num_seeds=4,
                                    key=jax.random.key(0)).error,
}
for name, f in calls.items():
    t = time.perf_counter(); jax.block_until_ready(f()); first = time.perf_counter() - t
    runs = []
    for _ in range(3):
        t = time.perf_counter(); jax.block_until_ready(f()); runs.append(time.perf_counter() - t)
    out[name] = dict(first_s=first, compiled_s=[statistics.median(runs), min(runs), max(runs)],
                     overhead_s=first - statistics.median(runs))
print(json.dumps(out))
"""


def main():
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
        results = []
        for process in (1, 2):
            res = subprocess.run(
                [sys.executable, "-c", CHILD, cache],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            results.append(json.loads(res.stdout.strip().splitlines()[-1]))
        entries = len(os.listdir(cache))
    for process, r in enumerate(results, 1):
        what = "compile" if process == 1 else "cache load"
        print(f"process {process}: import {r['import_s']:.2f} s")
        for name in ("dmft", "simulate"):
            c = r[name]
            med, lo, hi = c["compiled_s"]
            print(
                f"  {name:8s} first call {c['first_s']:6.2f} s, compiled call {med:.2f} s "
                f"[{lo:.2f}, {hi:.2f}], {what} {c['overhead_s']:.2f} s"
            )
    print(f"cache entries: {entries}")
    write("compile.json", dict(processes=results, cache_entries=entries))


if __name__ == "__main__":
    main()
