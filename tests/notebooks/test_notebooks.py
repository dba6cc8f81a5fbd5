"""The notebooks run headless, top to bottom, on a database filled by ``python -m labelkit.demo``;
and they are committed without outputs."""

from __future__ import annotations

from labelkit.domain import Viewer

import json
import os
from pathlib import Path
from typing import Any

import nbclient
import nbformat
import pytest

from labelkit import demo
from labelkit.db.queries import images as image_q
from labelkit.db.queries import labels as label_q
from labelkit.db.queries import reviews as review_q
from labelkit.db.queries import users as user_q
from labelkit.db.queries import worker as worker_q
from labelkit.db.engine import transaction
from labelkit.db.models import ReviewState
from labelkit.labelers.base import ImageInput, LabelOptions
from labelkit.labelers.fake import FakeLabeler
from labelkit.services import build_services
from labelkit.settings import get_settings

pytestmark = [pytest.mark.model, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def _run(name: str, cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    # The kernel inherits this process's environment (LABELKIT_*, PYTHONPATH) and runs the
    # venv's own python (jupyter_client swaps a bare "python" in the kernelspec for sys.executable).
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    return nb


def _tagged(nb: nbformat.NotebookNode, tag: str) -> str:
    """Every text and HTML output of the cell tagged ``tag``, as one string."""
    cell = next(c for c in nb.cells if tag in c.metadata.get("tags", []))
    parts: list[str] = []
    for out in cell.outputs:
        assert out.output_type != "error"
        data: dict[str, Any] = out.get("data", {})
        parts += [
            str(data.get("text/plain", "")),
            str(data.get("text/html", "")),
            str(data.get("text/markdown", "")),
        ]
        parts.append(str(out.get("text", "")))
    return "\n".join(parts)


@pytest.fixture
def demo_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABELKIT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LABELKIT_MODEL_DIR", str(ROOT / "data" / "models"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    get_settings.cache_clear()
    assert demo.main(["--user", "demo", "--password", "demo-password-1"]) == 0
    # A person reviews the model: labels at 80% or more are right, the rest wrong.
    services = build_services(get_settings())
    with transaction(services.engine) as s:
        user = user_q.get_user_by_username(session=s, username="demo")
        assert user is not None
        viewer = Viewer(user_id=user.id, is_admin=user.is_admin)
        for row in review_q.review_queue(session=s, viewer=viewer, limit=500):
            review = ReviewState.CONFIRMED if row.confidence >= 80 else ReviewState.REJECTED
            label_q.set_human_label(
                session=s, viewer=viewer, image_id=row.image_id, name=row.name, review=review
            )
    return tmp_path


def _add_second_labeller() -> None:
    services = build_services(get_settings())
    fake = FakeLabeler(model_version="fake-1")
    with transaction(services.engine) as s:
        viewer = Viewer(user_id="test", is_admin=True)
        for image in image_q.list_images(session=s, viewer=viewer, page_size=100).items:
            result = fake.label(
                ImageInput(data=services.store.get(image.object_key)), LabelOptions(min_confidence=0)
            )
            worker_q.save_model_labels(session=s, image_id=image.id, result=result)


def test_notebooks_run_top_to_bottom(demo_database: Path) -> None:
    # One model version: the compare notebook says so instead of failing.
    nb = _run("compare_labelers", demo_database)
    assert "Only 1 model version" in _tagged(nb, "versions")

    explore = _run("explore_labels", demo_database)
    thresholds = _tagged(explore, "thresholds")
    assert "suggested_min_confidence" in thresholds and "(all labels)" in thresholds
    assert "not enough reviews" in thresholds  # most labels have only a review or two
    charts = [
        o
        for c in explore.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "vega" in json.dumps(o.get("data", {}))
    ]
    assert len(charts) >= 5

    _add_second_labeller()
    compare = _run("compare_labelers", demo_database)
    assert "Comparing" in _tagged(compare, "versions")
    assert "jaccard" in _tagged(compare, "agreement")
    assert "have some disagreement" in _tagged(compare, "disagreements")


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebooks_have_no_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip the outputs"
