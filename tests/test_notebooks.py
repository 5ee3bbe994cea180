"""Every notebook in notebooks/ runs from top to bottom (nbclient), at tiny sizes.

The sizes are set in each notebook's cell tagged `parameters`; like papermill, the test
inserts a cell right after it that shrinks them further, so that each notebook runs in
about a minute on two CPU cores (at these sizes compiling is most of the time)."""

import os
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
TINY = {
    "01_quickstart.ipynb": "STEPS, SAMPLES = 6, 64",
    "02_dmft_vs_simulation.ipynb": "STEPS, SAMPLES, DIM, SEEDS, DIMS = 6, 64, 40, 2, (20, 40)",
    "03_sweeps.ipynb": (
        "ALPHAS, LAMS, STEPS, SAMPLES, TAUS = np.array([2.0, 4.0]), "
        "np.array([0.0, 0.1]), 5, 64, np.array([4.0, 8.0])"
    ),
    "04_spectral_initialisation.ipynb": "DIM, SEEDS, STEPS, SAMPLES, POINTS = 60, 2, 5, 64, 4",
    "05_fixed_point_and_tuning.ipynb": "STEPS, SAMPLES, ITERATIONS, GRID = 40, 128, 2, 4",
    "06_momentum_after_a_spectral_start.ipynb": (
        "STEPS, SAMPLES, REPLICAS, DIM, SEEDS = 8, 64, 2, 60, 2"
    ),
    "07_your_own_model_and_loss.ipynb": "STEPS, SAMPLES, REPLICAS, DIM, SEEDS = 8, 64, 4, 60, 2",
    "08_worked_example.ipynb": (
        "ALPHAS, STEPS, SAMPLES, REPLICAS, DIM, SEEDS = (5.0,), 8, 64, 2, 60, 2"
    ),
}


# the public names each notebook needs beyond the core (skipped in a build without them)
NEEDS = {
    "03_sweeps.ipynb": ("sweep", "Trimmed", "spectral_theory", "fixed_point"),
    "04_spectral_initialisation.ipynb": (
        "SpectralInit",
        "Trimmed",
        "Clipped",
        "LuoAlghamdiLu",
        "MondelliMontanari",
        "spectral_theory",
        "weak_recovery_threshold",
        "spectral_simulation",
    ),
    "05_fixed_point_and_tuning.ipynb": (
        "fixed_point",
        "fixed_point_sweep",
        "tune_ridge",
        "tune_step_size",
        "plot_tuning",
    ),
    "07_your_own_model_and_loss.ipynb": ("AbstractBinaryModel", "fixed_point"),
    "08_worked_example.ipynb": (
        "SpectralInit",
        "MondelliMontanari",
        "spectral_theory",
        "weak_recovery_threshold",
        "fixed_point",
        "predicted_rate",
    ),
}


def test_every_notebook_is_listed():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
def test_notebook_runs(name, monkeypatch, tmp_path):
    import dmftjax

    missing = [n for n in NEEDS.get(name, ()) if not hasattr(dmftjax, n)]
    if missing:
        pytest.skip(f"dmftjax lacks {missing}")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    first = next(c.source for c in nb.cells if c.cell_type == "code")
    assert "except ImportError" in first and "%pip install" in first  # Colab install, guarded
    (i,) = [k for k, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert "FULL = False" in nb.cells[i].source
    nb.cells.insert(i + 1, nbformat.v4.new_code_cell(TINY[name]))
    # the kernel imports this checkout of dmftjax and draws as Jupyter does: with the
    # kernel's own inline backend (no MPLBACKEND forced, which would hide every figure)
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.setenv("JAX_PLATFORMS", os.environ.get("JAX_PLATFORMS", "cpu"))
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    # every cell that draws shows its figure (an image in the cell's outputs)
    for cell in nb.cells:
        if cell.cell_type != "code" or not DRAWS(cell.source):
            continue
        images = [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        assert images, f"{name}: a cell that draws shows no figure:\n{cell.source[:200]}"


def DRAWS(source: str) -> bool:
    return any(k in source for k in ("plt.", "plot_", "compare(", ".plot("))
