"""Typed use of every public name, checked by mypy in tests/test_lint.py (never run):
what a user writes type-checks, and the annotated results are what the API returns."""

from pathlib import Path

import jax
import numpy as np
import optax

import dmftjax as dj
from dmftjax import plotting

key = jax.random.key(0)
problem: dj.Problem = dj.Problem(
    dj.PhaseRetrieval(0.1), dj.WirtingerLoss(), alpha=3.0, regulariser=dj.Ridge(0.05)
)
models: list[dj.AbstractModel] = [
    dj.LinearModel(0.1),
    dj.ProbitModel(0.1),
    dj.LogisticModel(1.0),
    dj.PhaseRetrieval(),
]
binary: dj.AbstractBinaryModel = dj.ProbitModel(0.1)
priors: list[dj.AbstractPrior] = [dj.GaussianPrior(), dj.RademacherPrior()]
losses: list[dj.AbstractLoss] = [dj.SquareLoss(), dj.LogisticLoss(), dj.WirtingerLoss()]
preps: list[dj.AbstractPreprocessing] = [
    dj.Identity(),
    dj.Trimmed(4.0),
    dj.Clipped(3.0),
    dj.LuoAlghamdiLu(),
    dj.MondelliMontanari(),
    dj.MondelliMontanariThreshold(),
]
algorithms: list[dj.AbstractAlgorithm] = [
    dj.GradientDescent(0.05, 10),
    dj.GradientDescent(optax.exponential_decay(0.1, 5, 0.5), 10),
    dj.HeavyBall(0.05, 0.5, 10),
    dj.Nesterov(0.05, 0.5, 10),
]
coefficients: dj.Coefficients = algorithms[0].coefficients(problem)
estimators: list[dj.AbstractEstimator] = [dj.Tangent(), dj.IntegrationByParts(), dj.Windowed(40)]
inits: list[dj.AbstractInit] = [dj.InformedInit(0.5, 1.0), dj.SpectralInit(dj.Trimmed(4.0))]
start: dj.DMFTStart = inits[0].dmft_start(problem)

traj: dj.Trajectory = dj.solve_dmft(
    problem,
    algorithms[0],
    inits[0],
    num_samples=64,
    key=key,
    estimator=dj.Windowed(40),
    progress=True,
)
sim: dj.Trajectory = dj.simulate(problem, algorithms[0], inits[0], dim=50, num_seeds=2, key=key)
obs, kernels = dj.dmft_replica(problem, algorithms[0], inits[0], key=key, num_samples=64)
names: tuple[str, ...] = dj.OBSERVABLES
law = traj.law("row", 5)
coordinate = traj.law("coordinate", 5)
laws: list[dj.EmpiricalLaw | dj.CoordinateLaw] = [law, coordinate]
test: dj.LawComparison = dj.compare_laws(law, sim.law("row", 5), "r")
p_value: float = float(test.p_value)

fp: dj.FixedPoint = dj.fixed_point(problem, num_nodes=48)
fps: dj.FixedPoint = dj.fixed_point_sweep(problem, lam=np.array([0.01, 0.1]))
rate: dj.RatePrediction = dj.predicted_rate(problem, algorithms[0], fixed=fp)
edges = dj.hessian_edges(problem, fp)
check: dj.HessianCheck = dj.hessian_check(problem, algorithms[0], inits[0], dim=50, key=key)
measured = dj.measured_rate(np.asarray(traj.values["error"]))

theory: dj.SpectralTheory = dj.spectral_theory(problem, dj.Trimmed(4.0))
alpha_c: float = dj.weak_recovery_threshold(problem.model, dj.Trimmed(4.0))
spectral: dj.SpectralSimulation = dj.spectral_simulation(
    problem, dj.Trimmed(4.0), dim=50, num_seeds=2, key=key
)
lam1, vector, eigen = dj.top_eigenpair(jax.numpy.ones((20, 5)), jax.numpy.ones(20), key=key)
eigen_info: dj.EigenInfo = eigen

result: dj.SweepResult = dj.sweep(
    problem, algorithms[0], inits[0], alpha=[2.0, 3.0], key=key, out=Path("sweeps"), batch_size=2
)
shape: tuple[int, ...] = result.shape

tuned: dj.TuneResult = dj.tune_ridge(problem, lam0=0.1, steps=5)
tuned2: dj.TuneResult = dj.tune_step_size(problem, inits[0], num_samples=64, key=key)
tuned3: dj.TuneResult = dj.tune_algorithm(
    problem, algorithms[2], inits[0], field="momentum", num_samples=64, key=key
)
objective = dj.algorithm_objective(problem, algorithms[0], inits[0], num_samples=64, key=key)
tuned4: dj.TuneResult = dj.tune(objective, np.log(0.05), steps=3)
best = dj.grid_search(objective, np.log(np.array([0.01, 0.05])))
value = dj.tuned_value(tuned4.params)
figure = dj.plot_tuning([])

cache: Path | None = dj.enable_compilation_cache()
where: Path | None = dj.compilation_cache_dir()
version: str = dj.__version__

fig = plotting.compare(traj, sim)
fig2 = plotting.plot_phase_diagram(result)
fig3 = plotting.plot_sweep_curves(result)
fig4 = plotting.plot_law(traj, sim, 5)
