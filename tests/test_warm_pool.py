"""The warm pool of worker processes (quant_core.serving.pool.WarmPool): reuse per model, eviction and idle
expiry, limits still enforced, the spare, cancel."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conftest import REPO
from quant_core import CompareOptions, CompareRequest, Mode, Recipe
from quant_core.serving.pool import WarmPool
from quant_core.serving.client import JobClient
from quant_core.serving.protocol import CompareJob, Place, PrepareJob
from quant_core.serving.worker import Limits, WorkerError


@pytest.fixture(autouse=True)
def test_jobs(monkeypatch):
    monkeypatch.setenv("QW_JOB_MODULES", "tests.worker_jobs")
    monkeypatch.chdir(REPO)


@pytest.fixture()
def pool():
    workers = WarmPool(size=2, idle_s=600, spare=False)
    yield workers
    workers.close()


def _compare(model_files, image_dir, tmp_path, *modes: Mode) -> CompareJob:
    request = CompareRequest(str(model_files["keras"]), (str(image_dir),), None,
                             CompareOptions(recipes=tuple(Recipe(m) for m in modes), measure_latency=False))
    return CompareJob(request, Place(cache_dir=str(tmp_path / "cache")))


def _gone(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "zombie" in status.read_text()


def test_a_second_request_on_the_same_model_reuses_the_loaded_model(pool, model_files, image_dir, tmp_path):
    jobs = JobClient.warm(pool, "tiny")
    first = jobs.run(_compare(model_files, image_dir, tmp_path, Mode.INT8))
    seen: list = []
    second = jobs.run(_compare(model_files, image_dir, tmp_path, Mode.INT8, Mode.FLOAT16), on_progress=seen.append)
    messages = [p.message for p in seen]
    assert "Using the model already loaded in this worker" in messages
    assert "int8: measured before on this model" in messages and "Building float16" in messages
    assert "Building int8" not in messages  # only the variant that changed is built
    assert second.variant("int8") == first.variant("int8") and second.variant("float16").ok
    stats = pool.run("tiny", "worker.stats", {})
    assert stats["models_loaded"] == 1 and pool.workers() == {"tiny": stats["pid"]}


def test_the_least_recently_used_worker_is_closed_beyond_the_pool_size(model_files, image_dir, tmp_path):
    pool = WarmPool(size=1, idle_s=600, spare=False)
    try:
        first = pool.run("a", "worker.stats", {})["pid"]
        second = pool.run("b", "worker.stats", {})["pid"]
        assert pool.workers() == {"b": second} and first != second
        time.sleep(0.2)
        assert _gone(first)
    finally:
        pool.close()


def test_idle_workers_expire(model_files, caplog):
    import threading

    caplog.set_level("INFO", logger="quant_core.serving.pool")
    pool = WarmPool(size=2, idle_s=0.5, spare=False)
    try:
        pid = pool.run("a", "worker.stats", {})["pid"]
        assert pool.workers() == {"a": pid}
        time.sleep(2.0)  # the reaper thread closes it without any request
        assert pool.workers() == {} and _gone(pid)
        assert f"closing worker {pid}: idle for" in caplog.text
        assert "worker-reaper" in {t.name for t in threading.enumerate()}
    finally:
        pool.close()


@pytest.mark.parametrize("job, payload, limits, message", [
    ("test.sleep", {"seconds": 60}, Limits(timeout_s=2, memory_mb=4096), "longer than 2 s"),
    ("test.allocate", {"mb": 800}, Limits(timeout_s=60, memory_mb=300), "more than 300 MB"),
    ("test.abort", {}, None, r"the worker process crashed \(signal SIGABRT\)"),
])
def test_limits_hold_on_a_warm_worker_and_the_next_request_gets_a_fresh_one(pool, job, payload, limits, message):
    warm = pool.run("m", "worker.stats", {})["pid"]
    with pytest.raises(WorkerError, match=message):
        pool.run("m", job, payload, limits=limits)
    assert _gone(warm) and pool.workers() == {}
    fresh = pool.run("m", "worker.stats", {})
    assert fresh["pid"] != warm and fresh["models_loaded"] == 0


def test_an_abandoned_request_ends_its_worker(pool):
    warm = pool.run("m", "worker.stats", {})["pid"]

    class Superseded(Exception):
        pass

    def cancel(progress):
        raise Superseded

    with pytest.raises(Superseded):
        pool.run("m", "test.scratch_then_die", {"how": "hang"}, on_progress=cancel)
    assert _gone(warm) and pool.workers() == {}
    assert pool.run("m", "test.echo", {"ok": 1}) == {"ok": 1}


def test_a_request_whose_caller_left_ends_its_worker_even_when_the_job_never_reports(pool):
    """The caller's watch runs between reports too: a job silent for a minute is stopped when the watch says so."""
    from quant_core.errors import Cancelled

    warm = pool.run("m", "worker.stats", {})["pid"]
    start = time.monotonic()
    calls = []

    def watch():
        calls.append(time.monotonic())
        if calls[-1] - start > 0.5:
            raise Cancelled("stopped: the browser session that asked for it is gone")

    with pytest.raises(Cancelled, match="session that asked for it is gone"):
        pool.run("m", "test.sleep", {"seconds": 60}, watch=watch)  # never reports progress
    assert time.monotonic() - start < 30 and len(calls) >= 3
    assert _gone(warm) and pool.workers() == {}
    assert pool.run("m", "test.echo", {"ok": 1}) == {"ok": 1}


def test_a_spare_worker_with_tensorflow_imported_serves_the_next_new_model():
    pool = WarmPool(size=2, idle_s=600, spare=True)
    try:
        pool.warm_up()
        spare = pool.spare_pid
        assert spare is not None
        assert pool.run("new model", "worker.stats", {})["pid"] == spare  # the spare took the request
        assert pool.spare_pid not in (None, spare)  # and was replaced after the request
    finally:
        pool.close()


@pytest.mark.internal_error
def test_a_bug_in_a_job_ends_its_warm_worker(pool):
    from quant_core.errors import InternalError

    warm = pool.run("m", "worker.stats", {})["pid"]
    with pytest.raises(InternalError):
        pool.run("m", "test.bug", {})
    assert _gone(warm) and pool.workers() == {}
    assert pool.run("m", "worker.stats", {})["pid"] != warm


def test_a_user_error_keeps_the_warm_worker(pool):
    from quant_core.errors import ImageError

    warm = pool.run("m", "worker.stats", {})["pid"]
    with pytest.raises(ImageError):
        pool.run("m", "test.image_error", {})
    assert pool.workers() == {"m": warm}


def test_a_superseded_request_stops_at_its_next_step_and_its_worker_stays_warm(pool, model_files, image_dir,
                                                                                tmp_path):
    import threading

    from quant_core.errors import Cancelled

    JobClient.warm(pool, "tiny").run(_compare(model_files, image_dir, tmp_path, Mode.FLOAT16))
    warm = pool.workers()["tiny"]
    cancel = threading.Event()
    reports = []

    def supersede(progress):  # a newer request arrives while this one works
        reports.append(progress)
        cancel.set()

    with pytest.raises(Cancelled, match="a newer request replaced this one"):
        pool.run("tiny", "test.scratch_then_die", {"how": "hang"}, on_progress=supersede, cancel=cancel)
    assert 1 <= len(reports) <= 5  # it reports every 0.1 s: it stopped at one of its next reports
    assert pool.workers() == {"tiny": warm}  # the process is kept, with the model it loaded
    stats = pool.run("tiny", "worker.stats", {})
    assert stats == {"pid": warm, "models_loaded": 1}
    with pytest.raises(Cancelled):  # cancelled before it started: the worker is not even asked
        pool.run("tiny", "test.echo", {"ok": 1}, cancel=cancel)
    assert pool.run("tiny", "worker.stats", {})["pid"] == warm


def test_a_job_that_does_not_stop_when_cancelled_is_killed_after_the_grace_period(pool, monkeypatch):
    import threading

    from quant_core.serving import worker
    from quant_core.errors import Cancelled

    monkeypatch.setattr(worker, "_CANCEL_GRACE_S", 0.5)
    warm = pool.run("m", "worker.stats", {})["pid"]
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    start = time.monotonic()
    with pytest.raises(Cancelled, match="did not stop within"):
        pool.run("m", "test.sleep", {"seconds": 60}, cancel=cancel)  # never reports progress
    assert time.monotonic() - start < 30
    assert _gone(warm) and pool.workers() == {}
    assert pool.run("m", "worker.stats", {})["pid"] != warm


def test_a_request_waits_for_the_running_request_on_its_key_and_gets_its_worker(pool):
    import threading

    first = pool.run("m", "worker.stats", {})["pid"]
    answers = {}
    slow = threading.Thread(target=lambda: answers.update(slow=pool.run("m", "test.sleep", {"seconds": 1.5})))
    slow.start()
    time.sleep(0.5)  # the slow request holds the key's worker
    assert pool.run("m", "worker.stats", {})["pid"] == first  # not a second worker for the same model
    slow.join()
    assert answers == {"slow": "woke up"}


def test_prepare_opens_the_workbench_so_the_first_run_finds_the_baseline_measured(pool, model_files, image_dir,
                                                                                  tmp_path):
    jobs = JobClient.warm(pool, "tiny")
    baseline = _compare(model_files, image_dir, tmp_path, Mode.FLOAT32)
    prepared = jobs.run(PrepareJob(baseline.request, baseline.place))
    assert prepared.models_loaded == 1
    seen: list = []
    result = jobs.run(_compare(model_files, image_dir, tmp_path, Mode.FLOAT32, Mode.INT8), on_progress=seen.append)
    messages = [p.message for p in seen]
    assert "float32: measured before on this model" in messages and "Building int8" in messages
    assert pool.run("tiny", "worker.stats", {}) == {"pid": prepared.pid, "models_loaded": 1}
    assert [v.name for v in result.variants] == ["float32", "int8"] and all(v.ok for v in result.variants)


def test_a_worker_yields_the_cpu_in_its_own_autogroup_too(pool):
    """A worker leads its own session: under autogroup scheduling only its session's niceness weighs it against the
    server's (the process's own niceness would be compared with nothing)."""
    import os
    from pathlib import Path

    from quant_core.config import config

    mine = Path("/proc/self/autogroup")
    if not mine.exists():
        pytest.skip("this kernel has no autogroup scheduling")
    pid = pool.run("m", "worker.stats", {})["pid"]
    group, _, nice = Path(f"/proc/{pid}/autogroup").read_text().split()
    # The file is empty for a process in the kernel's default autogroup (as the tests are on CI's machine).
    assert group not in mine.read_text().split()[:1]  # its own session, so its own group
    assert int(nice) == os.getpriority(os.PRIO_PROCESS, pid) == os.nice(0) + config().worker_nice
