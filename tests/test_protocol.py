"""The typed job protocol (quant_core.serving.protocol) and its client: one request and answer type per job,
serialised in one place, progress as patches, the same answers in a worker and in this process."""

from __future__ import annotations

import ast
import json
import threading
from pathlib import Path

import pytest

from conftest import REPO
from quant_core import CompareOptions, CompareRequest, CompareResult, Mode, PreprocessingOverride, Progress, Recipe
from quant_core.cache import ArtifactCache
from quant_core.errors import Cancelled
from quant_core.layers import LayerReport
from quant_core.results.dataset_compare import DatasetEvaluation
from quant_core.results.verdict import Floor, FloorKind, Target
from quant_core.serving import protocol
from quant_core.serving.client import JobClient
from quant_core.serving.protocol import (REQUESTS, CalibrationJob, CompareJob, DescribeJob, DatasetJob,
                                         ExecutorChoice, LayersJob, MessageReader, MessageWriter, ModelDescription,
                                         Place, PrepareJob, StatsJob, TuneJob, WorkerStats)
from quant_core.tune import CalibrationSweep, Objective, TuneResult


def _request(model_files, image_dir, labels_file, *modes: Mode) -> CompareRequest:
    return CompareRequest(str(model_files["keras"]), (str(image_dir),), str(labels_file),
                          CompareOptions(recipes=tuple(Recipe(m) for m in modes), measure_latency=False))


@pytest.fixture(scope="module")
def messages(model_files, image_dir, labels_file, tmp_path_factory) -> tuple[list[Progress], CompareResult]:
    """A real comparison run in this process through the client: its progress messages and its answer."""
    seen: list[Progress] = []
    request = _request(model_files, image_dir, labels_file, Mode.FLOAT16, Mode.INT8, Mode.DYNAMIC_RANGE)
    cache = ArtifactCache(tmp_path_factory.mktemp("protocol-cache"))
    result = JobClient.in_process().run(CompareJob(request, Place.of(cache, None)), on_progress=seen.append)
    return seen, result


def test_every_job_has_one_request_type_that_names_its_answer_type():
    assert {name: (cls, cls.answer) for name, cls in REQUESTS.items()} == {
        "describe": (DescribeJob, ModelDescription), "compare": (CompareJob, CompareResult),
        "prepare": (PrepareJob, WorkerStats), "layers": (LayersJob, LayerReport), "tune": (TuneJob, TuneResult),
        "calibration": (CalibrationJob, CalibrationSweep), "dataset": (DatasetJob, DatasetEvaluation),
        "worker.stats": (StatsJob, WorkerStats)}


def test_every_request_survives_the_pipe_unchanged(model_files, image_dir, labels_file, messages):
    request = _request(model_files, image_dir, labels_file, Mode.INT8)
    place = Place("/cache", "/work")
    int8 = Recipe(Mode.INT8, calibration_count=4, float_layers=("conv_b",))
    jobs = [DescribeJob(str(model_files["keras"]), (str(image_dir),), None, PreprocessingOverride(), place, 8),
            CompareJob(request, place, earlier=messages[1]), PrepareJob(request, place),
            LayersJob(request, place, int8, "int8"),
            TuneJob(request, place, Floor(FloorKind.ACCURACY_DROP, 0.02), Objective.LATENCY, int8,
                    target=Target.INTEGER, max_steps=3),
            CalibrationJob(request, place, int8),
            DatasetJob(request, place, messages[1], ("float32", "int8"), "/data/set", ExecutorChoice("ray", "h:1")),
            StatsJob()]
    for job in jobs:
        payload = json.loads(json.dumps(protocol.encode_request(job)))  # what the worker reads from its stdin
        assert protocol.decode_request(job.job, payload) == job


def test_a_comparison_s_progress_travels_as_patches_and_is_rebuilt_whole(messages):
    seen, result = messages
    partials = [m for m in seen if m.partial is not None]
    assert len(partials) >= 4  # one per variant measured (float32 first)
    writer, reader, full = MessageWriter(), MessageReader(), MessageWriter(patches=False)
    sizes = []
    for message in seen:
        wire = json.loads(json.dumps(writer.encode(message)))
        assert reader.decode(wire) == message  # the partial rebuilt equals the one the job reported
        sizes.append((len(json.dumps(wire)), len(json.dumps(full.encode(message)))))
    patched = [wire for wire, _ in sizes]
    whole = [whole for _, whole in sizes]
    assert sum(patched) < 0.7 * sum(whole), sizes  # each patch carries only the variant just measured
    last = partials[-1].partial
    assert last is not None and [v.name for v in last.variants] == [v.name for v in result.variants]


def test_a_patch_sends_only_the_variants_that_changed(messages):
    seen, _ = messages
    writer = MessageWriter()
    wires = [writer.encode(m) for m in seen if m.partial is not None]
    assert "head" in wires[0]["partial"] and all("head" not in w["partial"] for w in wires[1:])
    assert [sorted(w["partial"]["variants"]) for w in wires] == [[str(i)] for i in range(len(wires))]


def test_the_same_request_gives_the_same_answer_in_a_worker_and_in_this_process(model_files, image_dir, labels_file,
                                                                                 tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    request = _request(model_files, image_dir, labels_file, Mode.INT8)
    here = JobClient.in_process().run(CompareJob(request, Place(str(tmp_path / "here"))))
    seen: list[Progress] = []
    there = JobClient.one_shot().run(CompareJob(request, Place(str(tmp_path / "there"))), on_progress=seen.append)
    assert isinstance(there, CompareResult) and [v.tflite_sha256 for v in there.variants] == \
        [v.tflite_sha256 for v in here.variants]
    assert [v.top1 for v in there.variants] == [v.top1 for v in here.variants]
    partials = [m.partial for m in seen if isinstance(m, Progress) and m.partial is not None]
    assert len(partials) == 2 and partials[-1].variants == there.variants  # rebuilt from patches in this process


def test_describe_answers_as_its_type(model_files, image_dir, labels_file, tmp_path):
    found = JobClient.in_process().run(DescribeJob(str(model_files["keras"]), (str(image_dir),), str(labels_file),
                                                   PreprocessingOverride(), Place(str(tmp_path)), thumbnails=3))
    assert isinstance(found, ModelDescription) and found.info.num_classes == 3
    assert found.image_count == sum(n for _, n in found.class_counts) and len(found.thumbnails) == 3


def test_a_cancel_stops_an_in_process_job_at_its_next_report(model_files, image_dir, labels_file, tmp_path):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        JobClient.in_process().run(CompareJob(_request(model_files, image_dir, labels_file, Mode.INT8),
                                              Place(str(tmp_path))), cancel=cancel)


def _string_job_calls(path: Path) -> list[str]:
    """Calls in a file that name a job by a string: `x.run("compare", {...})`, `run_job("compare", ...)`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        called = node.func if isinstance(node, ast.Call) else None
        name = getattr(called, "attr", None) or getattr(called, "id", None)
        if name in ("run", "run_job") and any(isinstance(a, ast.Constant) and a.value in REQUESTS
                                              for a in node.args):
            found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def test_no_job_is_asked_for_by_hand_outside_the_client():
    """ui/, pages/, the CLI and bench build typed requests; only the client puts them on the wire."""
    files = [*REPO.glob("ui/*.py"), *REPO.glob("pages/*.py"), *REPO.glob("bench/*.py"), REPO / "streamlit_app.py",
             *[p for p in REPO.glob("quant_core/**/*.py") if p.name not in ("client.py", "protocol.py")]]
    assert [hit for path in files for hit in _string_job_calls(path)] == []
    assert _string_job_calls(REPO / "tests" / "test_warm_pool.py")  # the check sees such calls (they test the pool)
