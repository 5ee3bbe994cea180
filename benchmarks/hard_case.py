"""The known hard case: noiseless phase retrieval, small ridge (alpha = 3, lam = 0.01),
Mondelli-Montanari spectral start, step 0.02. A few rows settle in the wrong well of
(r^2 - y)^2 and stay there; measure, by d, the fraction of runs that end with a trapped
row, the fraction of trapped rows, and the long-time error; and the DMFT's prediction.

    python benchmarks/hard_case.py          # writes benchmarks/results/hard_case.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import dmftjax as dj  # noqa: E402
from dmftjax._simulate import _simulate_batch  # noqa: E402
from dmftjax._validate import as_arrays  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _common import write  # noqa: E402

STEPS = 200


def main(quick=False):
    problem = dj.Problem(dj.PhaseRetrieval(0.0), dj.WirtingerLoss(), alpha=3.0,
                         regulariser=dj.Ridge(0.01))
    init = dj.SpectralInit(dj.MondelliMontanari())
    gd = dj.GradientDescent(0.02, STEPS)
    out = {"alpha": 3.0, "lam": 0.01, "step": 0.02, "steps": STEPS, "simulation": [], "dmft": {}}
    dmft = dj.solve_dmft(problem, gd, init, num_samples=20000, num_replicas=4,
                         key=jax.random.key(0), estimator="ibp")
    ww = np.asarray(dmft.wrong_well)
    out["dmft"] = dict(error=float(dmft.error[-1]), error_se=float(dmft.error_se[-1]),
                       wrong_well=float(ww[-1]), wrong_well_se=float(dmft.wrong_well_se[-1]),
                       samples=4 * 20000)
    print(f"DMFT (ibp, 4 x 20000 samples): final error {dmft.error[-1]:.2e} ± "
          f"{dmft.error_se[-1]:.1e}, trapped fraction {ww[-1]:.2e} ± {dmft.wrong_well_se[-1]:.1e}")
    for dim, seeds in ([(500, 8)] if quick else [(500, 16), (1000, 12), (2000, 8)]):
        p, a, i = as_arrays((problem, gd, init))
        keys = jax.random.split(jax.random.key(dim), seeds)
        curves = _simulate_batch(p, a, i, keys, dim, 3 * dim, 2)
        err = np.asarray(curves["error"])[:, -1]
        trapped = np.asarray(curves["wrong_well"])[:, -1]
        rows = trapped * 3 * dim
        row = dict(dim=dim, seeds=seeds, error_mean=float(err.mean()),
                   error_se=float(err.std(ddof=1) / np.sqrt(seeds)),
                   error_median=float(np.median(err)),
                   runs_with_trapped_row=float(np.mean(rows > 0.5)),
                   trapped_fraction=float(trapped.mean()),
                   error_if_none=float(np.mean(err[rows < 0.5])) if (rows < 0.5).any() else None,
                   error_if_some=float(np.mean(err[rows > 0.5])) if (rows > 0.5).any() else None)
        out["simulation"].append(row)
        print(f"d={dim:5d} seeds={seeds:3d} error {row['error_mean']:.2e} ± {row['error_se']:.1e} "
              f"(median {row['error_median']:.1e}); runs with a trapped row "
              f"{row['runs_with_trapped_row']:.2f}; trapped rows {row['trapped_fraction']:.1e}; "
              f"error without / with: {row['error_if_none']} / {row['error_if_some']}", flush=True)
    write("hard_case.json", out)


if __name__ == "__main__":
    main("--quick" in sys.argv)
