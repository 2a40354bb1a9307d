"""The Full dataset page through AppTest: the server's datasets listed, one evaluated by the engine, its scores shown
and equal to the engine's own numbers."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from augmented import write_augmented
from conftest import REPO
from test_layers_app import APP, ok  # the same app under AppTest, and its check for errors


@pytest.fixture()
def datasets(tmp_path, monkeypatch):
    root = tmp_path / "datasets"
    write_augmented(REPO / "sample_models" / "digits_images", root / "digits_val", 90, seed=3, flip=False)
    (root / "digits_val" / "7" / "broken.png").write_bytes(b"not a png")
    (root / "empty").mkdir()  # holds no images: not offered
    (root / "notes.txt").write_text("not a dataset")
    monkeypatch.setenv("QW_DATASETS_DIR", str(root))
    monkeypatch.delenv("QW_EXECUTOR", raising=False)
    return root


def on_full_dataset(modes: str) -> AppTest:
    """The app on the digits sample, its comparison of `modes` run, on the Full dataset page."""
    at = AppTest.from_file(APP, default_timeout=600)
    at.query_params.update({"sample": "digits_cnn", "modes": modes})
    at.run()
    next(b for b in at.button if b.label == "Run the full comparison").click().run()
    ok(at)
    return at.switch_page("pages/evaluate.py").run()


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_server_dataset_is_evaluated_and_scored(datasets, monkeypatch, executor):
    if executor == "ray":
        pytest.importorskip("ray")
        monkeypatch.setenv("QW_EXECUTOR", "ray")
        monkeypatch.setenv("QW_RAY_CPUS", "2")
    at = on_full_dataset("float32,int8,dynamic_range")
    ok(at)
    assert at.title[0].value == "Full dataset"
    options = at.selectbox(key="w.evaluate_dataset").options
    # the empty folder and the note are not datasets; the digits' folders are the model's class indices
    assert options == ["digits_val (91 images, 10 folders read as class indices)"]
    assert list(at.multiselect(key="w.evaluate_variants").value) == ["float32", "dynamic_range", "int8"]
    where = "this server's worker" if executor == "local" else "a local Ray on this server's CPUs"
    assert any(where in c.value for c in at.caption)
    at.multiselect(key="w.evaluate_variants").set_value(["int8"])
    next(b for b in at.button if b.label == "Evaluate on 91 images").click().run()
    ok(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images evaluated"] == "90" and metrics["Skipped"] == "1"
    table = at.dataframe[0].value.set_index("variant")
    assert list(table.index) == ["float32", "int8"]  # float32 runs as the reference
    assert table.loc["float32", "agreement"] == "100.00%" and table.loc["float32", "Δ vs float32"] == "+0.00 pts"
    evaluation = at.session_state["qw.evaluation"][1]
    assert evaluation.executor.startswith("local" if executor == "local" else "ray (2 CPUs, local)")
    assert metrics["Workers"] == str(len(evaluation.worker_names))
    int8 = evaluation.score("int8")
    assert table.loc["int8", "accuracy"] == f"{int8.accuracy:.2%}" and 0.8 <= int8.accuracy <= 1.0
    assert table.loc["int8", "agreement"] == f"{int8.top1_agreement:.2%}"
    assert [s.name for s in evaluation.skipped] == ["digits_val/7/broken.png"]
    assert "accuracy on 120" in table.columns  # the comparison's own images, beside the dataset's numbers
    assert [d.proto.label for d in at.get("download_button")] == ["Scores and per-image predictions (JSON)"]


def test_no_datasets_says_how_to_add_them(tmp_path, monkeypatch):
    monkeypatch.setenv("QW_DATASETS_DIR", str(tmp_path / "nothing-here"))
    at = AppTest.from_file(APP, default_timeout=600)
    at.query_params.update({"sample": "digits_cnn", "modes": "float32"})
    at.run()
    next(b for b in at.button if b.label == "Run the full comparison").click().run()
    at.switch_page("pages/evaluate.py").run()
    ok(at)
    assert "No datasets on this server" in at.info[0].value and "QW_DATASETS_DIR" in at.info[0].value


def test_a_cluster_that_cannot_be_reached_is_one_line_not_a_spinner(datasets, monkeypatch):
    """QW_RAY_ADDRESS where nothing listens: the evaluation ends at once with one line naming the address."""
    pytest.importorskip("ray")
    monkeypatch.setenv("QW_EXECUTOR", "ray")
    monkeypatch.setenv("QW_RAY_ADDRESS", "127.0.0.1:1")
    at = on_full_dataset("float32,int8")
    assert any("the Ray cluster at 127.0.0.1:1" in c.value for c in at.caption)
    next(b for b in at.button if b.label == "Evaluate on 91 images").click().run()
    assert [e.value for e in at.error] == ["cannot reach the Ray cluster at 127.0.0.1:1: Connection refused"]
    assert not at.exception and not at.metric  # no scores, no traceback, and no progress bar left
    assert not [b for b in at.button if b.label == "Stop"]
