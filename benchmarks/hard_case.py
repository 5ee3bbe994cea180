"""The hard case, settled by per-run laws: noiseless phase retrieval, small ridge
(alpha = 3, lam = 0.01), Mondelli-Montanari spectral start, step 0.02, 200 steps.

The long-time error is not self-averaging at these sizes: a few rows (samples) settle in
the wrong well of (r^2 - y)^2, and how many depends on the run. The question is whether
the DMFT reproduces that law when its replicas have as many samples as the simulation
has rows (M = n = alpha d): for each size, the per-seed law of the final error and of
the wrong-well fraction in the simulator against the per-replica law in the DMFT
(two-sample Kolmogorov-Smirnov tests on independent runs, so the p-values are exact
under the null), the fraction of runs that stall (final error > 0.01) with binomial
standard errors, and the medians.

    python benchmarks/hard_case.py          # writes benchmarks/results/hard_case.json
    python benchmarks/hard_case.py --quick  # two small sizes, few runs
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np
from scipy import stats

jax.config.update("jax_enable_x64", True)

import dmftjax as dj  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _common import write  # noqa: E402

STEPS, ALPHA, STALL = 200, 3.0, 1e-2


def summary(err, ww):
    err, ww = np.asarray(err), np.asarray(ww)
    stall = err > STALL
    return dict(
        runs=int(err.size),
        error_mean=float(err.mean()),
        error_se=float(err.std(ddof=1) / np.sqrt(err.size)),
        error_median=float(np.median(err)),
        error_quartiles=np.quantile(err, [0.25, 0.75]).tolist(),
        stalled=float(stall.mean()),
        stalled_se=float(np.sqrt(stall.mean() * (1 - stall.mean()) / err.size)),
        wrong_well_mean=float(ww.mean()),
        wrong_well_median=float(np.median(ww)),
        errors=err.tolist(),
        wrong_well=ww.tolist(),
    )


def main(quick=False, sizes=None, name="hard_case.json"):
    problem = dj.Problem(
        dj.PhaseRetrieval(0.0), dj.WirtingerLoss(), alpha=ALPHA, regulariser=dj.Ridge(0.01)
    )
    init = dj.SpectralInit(dj.MondelliMontanari())
    gd = dj.GradientDescent(0.02, STEPS)
    sizes = (
        sizes or [(150, 24, 24), (250, 16, 16)]
        if quick
        else sizes or [(250, 48, 48), (500, 40, 40), (1000, 32, 32), (2000, 16, 24)]
    )
    out = {"alpha": ALPHA, "lam": 0.01, "step": 0.02, "steps": STEPS, "stall": STALL, "sizes": []}
    for dim, seeds, replicas in sizes:
        rows = int(round(ALPHA * dim))
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            sim = dj.simulate(
                problem, gd, init, dim=dim, num_seeds=seeds, key=jax.random.key(dim), test_rows=0
            )
            t1 = time.perf_counter()
            dmft = dj.solve_dmft(
                problem,
                gd,
                init,
                num_samples=rows + rows % 2,
                num_replicas=replicas,
                key=jax.random.key(10 * dim),
                estimator="windowed",
            )
        t2 = time.perf_counter()
        s = summary(sim.info["final_runs"]["error"], sim.info["final_runs"]["wrong_well"])
        m = summary(dmft.info["final_runs"]["error"], dmft.info["final_runs"]["wrong_well"])
        ks_err = stats.ks_2samp(s["errors"], m["errors"])
        ks_ww = stats.ks_2samp(s["wrong_well"], m["wrong_well"])
        row = dict(
            dim=dim,
            rows=rows,
            simulation=s,
            dmft=m,
            diverged=dict(simulation=sim.info["num_diverged"], dmft=dmft.info["num_diverged"]),
            ks_error=dict(statistic=float(ks_err.statistic), p=float(ks_err.pvalue)),
            ks_wrong_well=dict(statistic=float(ks_ww.statistic), p=float(ks_ww.pvalue)),
            seconds=dict(simulation=t1 - t0, dmft=t2 - t1),
        )
        out["sizes"].append(row)
        print(
            f"d = {dim:5d} (n = M = {rows}): stalled sim {s['stalled']:.2f} ± "
            f"{s['stalled_se']:.2f}, dmft {m['stalled']:.2f} ± {m['stalled_se']:.2f}; "
            f"median error sim {s['error_median']:.2e}, dmft {m['error_median']:.2e}; "
            f"wrong well sim {s['wrong_well_mean']:.2e}, dmft {m['wrong_well_mean']:.2e}; "
            f"KS p: error {ks_err.pvalue:.2f}, wrong well {ks_ww.pvalue:.2f} "
            f"({t1 - t0:.0f} s + {t2 - t1:.0f} s)",
            flush=True,
        )
    write(name, out)


if __name__ == "__main__":
    # --sizes d:seeds:replicas,... runs only those (written to hard_case-<sizes>.json)
    chosen = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--sizes=")), None)
    if chosen:
        sizes = [tuple(int(v) for v in item.split(":")) for item in chosen.split(",")]
        main(sizes=sizes, name=f"hard_case-{chosen.replace(':', 'x').replace(',', '_')}.json")
    else:
        main("--quick" in sys.argv)
