"""The case-study notebook (notebooks/case_study.ipynb) runs top to bottom through the public API, and the numbers
it prints are those of the same run records run here."""

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
kernelspec = pytest.importorskip("ipykernel.kernelspec")

from sss_core import AnalysisOptions, make_record, presets, run_record  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "case_study.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook executed in a fresh kernel of this Python (its kernelspec written to a temporary folder)."""
    prefix = tmp_path_factory.mktemp("jupyter")
    kernelspec.install(kernel_name="sss-lab-test", prefix=str(prefix))
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    mp.setenv("OMP_NUM_THREADS", "1")
    try:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        nbclient.NotebookClient(nb, timeout=900, kernel_name="sss-lab-test",
                                resources={"metadata": {"path": str(NOTEBOOK.parents[1])}}).execute()
    finally:
        mp.undo()
    return nb


def _outputs(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


@pytest.mark.slow
def test_the_notebooks_numbers_are_those_of_its_run_records(executed, default_lm):
    texts = [o.text for o in _outputs(executed) if o.output_type == "stream"]
    summary = json.loads(next(t for t in texts if t.lstrip().startswith('{\n "ft-l"')))
    case = presets("validation", 1)[0]
    for name in ("ft-l", "ft-l+sss"):
        record = make_record(name, {}, case, default_lm, AnalysisOptions(world_locality=True))
        run = run_record(default_lm, record)
        shown = summary[name]
        assert shown["record_digest"] == record.digest()
        for metric in ("reliability", "generality", "locality"):
            assert shown[metric] == pytest.approx(run.result.metrics[metric])
        assert shown["world_damaged"] == run.world.n_damaged
        assert shown["world_locality"] == pytest.approx(run.world.world_locality)
        assert shown["lambda_max_before"] == pytest.approx(run.result.lambda_max_before, rel=1e-4)
    # the printed record and its replay command
    assert any('"editor": "ft-l+sss"' in t and '"fingerprint"' in t for t in texts)
    assert any("replay from the shell: sss-lab edit" in t for t in texts)


@pytest.mark.slow
def test_the_notebook_shows_its_figures_and_tables_inline(executed):
    html = [o.data["text/html"] for o in _outputs(executed) if "text/html" in o.get("data", {})]
    plotly = [h for h in html if "Plotly.newPlot" in h]
    assert len(plotly) == 3  # two projections and the weight change
    case = presets("validation", 1)[0]
    assert any(case.request.prompt in h and "<table" in h for h in html)  # the probe table
    assert any("layer 0" in h and "unedited" in h and "ft-l+sss" in h for h in html)  # lambda_max by layer
