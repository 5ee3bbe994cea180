"""Spectral start in the DMFT: the stationary slot against the power-method prehistory
(same accuracy target, T = 20 GD steps), after compilation.

    python benchmarks/bench_spectral.py     # writes benchmarks/results/spectral_dmft.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import dmftjax as dj  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _common import fmt, timeit, write  # noqa: E402


def main():
    problem = dj.Problem(
        dj.PhaseRetrieval(0.0), dj.WirtingerLoss(), alpha=3.0, regulariser=dj.Ridge(0.05)
    )
    init = dj.SpectralInit(dj.MondelliMontanari())
    gd = dj.GradientDescent(0.02, 20)
    out = {"alpha": 3.0, "steps": 20, "rows": []}
    res = {}
    for method in ("slot", "prehistory"):

        def run(method=method):
            return dj.solve_dmft(
                problem,
                gd,
                init,
                num_samples=10000,
                num_replicas=4,
                key=jax.random.key(0),
                spectral_method=method,
            ).values["error"]

        t = timeit(run, 3)
        traj = dj.solve_dmft(
            problem,
            gd,
            init,
            num_samples=10000,
            num_replicas=4,
            key=jax.random.key(0),
            spectral_method=method,
        )
        res[method] = traj
        extra = f" (K = {traj.info['power_steps']} power steps)" if method == "prehistory" else ""
        print(f"{method:10s} {fmt(t)}{extra}")
        out["rows"].append(
            dict(
                method=method,
                time=t,
                error=np.asarray(traj.error).tolist(),
                error_se=np.asarray(traj.error_se).tolist(),
                power_steps=traj.info.get("power_steps"),
            )
        )
    ratio = out["rows"][1]["time"][0] / out["rows"][0]["time"][0]
    print(f"prehistory / slot time: {ratio:.1f}x")
    out["ratio"] = ratio
    write("spectral_dmft.json", out)


if __name__ == "__main__":
    main()
