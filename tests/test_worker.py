"""Worker processes: results identical to in-process runs; crashes, hangs and memory overruns contained."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from conftest import REPO, IncidentWatch
from quant_core import CompareOptions, CompareRequest, Mode, PreprocessingOverride, QuantError, Recipe, run_compare
from quant_core.errors import ImageError, InternalError, report_internal
from quant_core.serving.client import JobClient
from quant_core.serving.protocol import CompareJob, DescribeJob, Place
from quant_core.serving.worker import Limits, WorkerError, run_job


@pytest.fixture(autouse=True)
def test_jobs(monkeypatch):
    monkeypatch.setenv("QW_JOB_MODULES", "tests.worker_jobs")
    monkeypatch.chdir(REPO)


def test_progress_and_result_cross_the_process_boundary():
    seen = []
    assert run_job("test.echo", {"a": [1, 2]}, on_progress=seen.append) == {"a": [1, 2]}
    assert seen == [{"fraction": 0.5}]


def test_an_aborting_job_is_a_clear_error_and_the_next_job_succeeds():
    with pytest.raises(WorkerError, match=r"crashed \(signal SIGABRT\)"):
        run_job("test.abort", {})
    assert run_job("test.echo", {"ok": True}) == {"ok": True}


def test_a_hanging_job_is_stopped_at_its_time_limit():
    start = time.monotonic()
    with pytest.raises(WorkerError, match="longer than 2 s"):
        run_job("test.sleep", {"seconds": 60}, limits=Limits(timeout_s=2, memory_mb=4096))
    assert time.monotonic() - start < 20


def test_a_job_over_its_memory_limit_is_stopped():
    with pytest.raises(WorkerError, match="more than 300 MB"):
        run_job("test.allocate", {"mb": 800}, limits=Limits(timeout_s=60, memory_mb=300))


@pytest.mark.parametrize("how, limits", [("abort", None), ("hang", Limits(timeout_s=3, memory_mb=4096))])
def test_a_dead_jobs_temporary_files_are_removed(how, limits):
    seen = []
    with pytest.raises(WorkerError):
        run_job("test.scratch_then_die", {"how": how}, limits=limits, on_progress=seen.append)
    scratch = Path(seen[0]["path"])
    assert scratch.suffix == ".scratch" and scratch.parent.name.startswith(f"qw-job-{os.getpid()}.")
    assert not scratch.exists() and not scratch.parent.exists()


def test_an_interrupted_request_kills_its_worker():
    """Streamlit stops a rerun by raising inside the script thread (here: in the progress callback)."""
    seen = []

    class Stop(Exception):
        pass

    def interrupt(progress):
        seen.append(progress)
        raise Stop

    with pytest.raises(Stop):
        run_job("test.scratch_then_die", {"how": "hang"}, on_progress=interrupt)
    pid = seen[0]["pid"]
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert not Path(seen[0]["path"]).parent.exists()
    assert run_job("test.echo", {"ok": 1}) == {"ok": 1}  # the pool slot was given back


def test_job_folders_of_a_dead_server_are_removed_by_the_next_job():
    orphan = Path(tempfile.mkdtemp(prefix="qw-job-999999999."))  # no such process
    mine = Path(tempfile.mkdtemp(prefix=f"qw-job-{os.getpid()}."))  # a live server's job in progress
    try:
        run_job("test.echo", {})
        assert not orphan.exists() and mine.exists()
    finally:
        shutil.rmtree(orphan, ignore_errors=True)
        shutil.rmtree(mine, ignore_errors=True)


def test_user_errors_keep_their_one_line_message(tmp_path):
    with pytest.raises(QuantError, match="missing.keras: no such file") as err:
        JobClient.one_shot().run(DescribeJob(str(tmp_path / "missing.keras"), (str(tmp_path),), None,
                                             PreprocessingOverride(), Place()))
    assert not isinstance(err.value, WorkerError)


def test_describe_in_a_worker(model_files, image_dir, labels_file):
    answer = JobClient.one_shot().run(DescribeJob(str(model_files["keras"]), (str(image_dir),), str(labels_file),
                                                  PreprocessingOverride(), Place()))
    assert answer.info.num_classes == 3 and answer.image_count == 24
    assert answer.preprocessing.normalization.preset.value == "0,255"
    assert answer.class_counts == (("red", 8), ("green", 8), ("blue", 8))  # the labels file's order


def test_compare_in_a_worker_matches_in_process(model_files, image_dir, labels_file, tmp_path):
    request = CompareRequest(str(model_files["keras"]), (str(image_dir),), str(labels_file),
                             CompareOptions(recipes=(Recipe(Mode.INT8), Recipe(Mode.FLOAT16)), measure_latency=False))
    here = run_compare(request, cache=__import__("quant_core").ArtifactCache(tmp_path / "a"))
    there = JobClient.one_shot().run(CompareJob(request, Place(str(tmp_path / "b"))))
    for a, b in zip(here.variants, there.variants):
        assert (a.name, a.tflite_sha256, a.top1, a.topk, a.accuracy) == (b.name, b.tflite_sha256, b.top1, b.topk,
                                                                         b.accuracy)


def test_a_user_errors_class_survives_the_process_boundary():
    with pytest.raises(ImageError, match="^no usable images in the upload$"):
        run_job("test.image_error", {})


@pytest.mark.internal_error
def test_a_bug_in_a_job_is_an_internal_error_logged_with_the_workers_traceback_and_output(no_internal_errors):
    with pytest.raises(InternalError, match=r"^internal error, logged as [0-9a-f]{8}$") as err:
        run_job("test.bug", {})
    assert not isinstance(err.value, QuantError)  # never shown as the user's fault
    (record,) = no_internal_errors.records
    logged = no_internal_errors.format(record)
    assert err.value.incident in logged and "job 'test.bug' in worker process" in logged
    assert "Traceback" in logged and "in bug_job" in logged and "KeyError: 'threshold'" in logged
    assert "WARNING quant_core.test: about to look up a missing setting" in logged  # the worker's own log


@pytest.mark.internal_error
def test_a_bug_in_a_builder_reaches_the_log_with_its_traceback(model_files, image_dir, tmp_path, monkeypatch,
                                                                no_internal_errors):
    monkeypatch.setenv("QW_JOB_MODULES", "tests.broken_builder")
    request = CompareRequest(str(model_files["keras"]), (str(image_dir),), None,
                             CompareOptions(recipes=(Recipe(Mode.FLOAT32), Recipe(Mode.INT8)), measure_latency=False))
    with pytest.raises(InternalError):
        JobClient.one_shot().run(CompareJob(request, Place(str(tmp_path))))
    (record,) = no_internal_errors.records
    logged = no_internal_errors.format(record)
    assert "in broken_int8_builder" in logged and "KeyError: 'per_chanel'" in logged


@pytest.mark.internal_error
def test_an_internal_error_fails_the_test_during_which_it_was_logged():
    with IncidentWatch() as watch:
        error = report_internal(KeyError("x"), context="a test")
    assert str(error) == f"internal error, logged as {error.incident}"
    with pytest.raises(pytest.fail.Exception, match="1 internal error"):
        watch.check()
