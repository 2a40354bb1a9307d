"""The warm pool: worker processes kept alive per model, so a what-if costs its own work only.

A cold request spawns a process that imports TensorFlow (~3 s), loads the model and
converts it to float before any variant is built. A `WarmPool` keeps up to `size`
workers alive, one per key (the caller's model content digest and preprocessing), each
holding its open workbenches (quant_core.compare.Workbenches): loaded model, float .tflite,
reference outputs, calibrations and measured variants. It also keeps one spare worker that
has already imported TensorFlow, so a new model does not wait for the import.

Every protection of a one-shot worker stays (quant_core.serving.worker.WorkerProcess): each request has
its own time and memory limit and private temporary folder; a crash, an overrun or an
abandoned request ends that worker, and the next request on its key gets a fresh one.
Workers idle longer than `idle_s`, and the least recently used beyond `size`, are closed;
a worker whose memory grew beyond `keep_mb` is closed after its request instead of kept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from quant_core.config import config
from quant_core.serving.worker import Limits, WorkerProcess, worker_slot

log = logging.getLogger(__name__)


class WarmPool:
    """Warm workers by key, least recently used first out, plus one spare with TensorFlow imported."""

    def __init__(self, *, size: int | None = None, idle_s: float | None = None, keep_mb: float | None = None,
                 spare: bool | None = None) -> None:
        settings = config()
        self.size = size if size is not None else settings.warm_workers
        self.idle_s = idle_s if idle_s is not None else settings.worker_idle_s
        self.keep_mb = keep_mb if keep_mb is not None else settings.worker_keep_mb
        self.spare_enabled = spare if spare is not None else settings.spare_worker
        self._idle: OrderedDict[str, WorkerProcess] = OrderedDict()  # workers waiting for their next request
        self._busy: dict[str, int] = {}  # keys with a request running, and how many
        self._spare: WorkerProcess | None = None
        self._reaper: threading.Thread | None = None
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)  # notified when a key's request ends

    def run(self, key: str, name: str, payload: dict[str, Any], *, limits: Limits | None = None,
            on_progress: Callable[[dict[str, Any]], None] | None = None,
            on_wait: Callable[[], None] | None = None, cancel: threading.Event | None = None,
            watch: Callable[[], None] | None = None) -> Any:
        """Runs a job on the warm worker of `key` (started, or taken from the spare, when there is none).

        Raises what `quant_core.serving.worker.run_job` raises, and `Cancelled` when `cancel` is set
        meanwhile (the worker stays warm when its job stopped in time); `watch` raising (see
        `WorkerProcess.run`) kills the worker. After a crash, an
        overrun or an interruption the worker is gone and the next request starts a fresh one.
        """
        self._wait_for_key(key, on_wait)
        try:
            with worker_slot(on_wait):
                worker = self._checkout(key)
                try:
                    return worker.run(name, payload, limits=limits, on_progress=on_progress, cancel=cancel,
                                      watch=watch)
                finally:
                    self._checkin(key, worker)
        finally:
            with self._lock:
                self._busy[key] -= 1
                if not self._busy[key]:
                    del self._busy[key]
                self._freed.notify_all()

    def _wait_for_key(self, key: str, on_wait: Callable[[], None] | None) -> None:
        """Waits while another request runs on this key: its worker, with what it loads, serves this one next.

        A second worker for the same model would load it again and compete for the CPU;
        waiting for the first is faster. Waits at most QW_WORKER_WAIT_S, then goes on.
        """
        deadline = time.monotonic() + config().worker_wait_s
        with self._lock:
            if self._busy.get(key) and on_wait is not None:
                on_wait()  # under the lock: it only reports (a page's progress callback)
            while self._busy.get(key) and time.monotonic() < deadline:
                self._freed.wait(timeout=1.0)
            self._busy[key] = self._busy.get(key, 0) + 1

    def workers(self) -> dict[str, int]:
        """The idle warm workers' process ids by key (a running request's worker is not listed)."""
        with self._lock:
            return {key: worker.pid for key, worker in self._idle.items()}

    def close(self) -> None:
        """Ends every worker, the spare too."""
        with self._lock:
            workers = list(self._idle.values()) + ([self._spare] if self._spare else [])
            self._idle.clear()
            self._spare = None
        for worker in workers:
            worker.close()

    def expire_idle(self) -> None:
        """Closes workers that waited longer than `idle_s` for a request."""
        now = time.monotonic()
        with self._lock:
            stale = [k for k, e in self._idle.items() if now - e.last_used > self.idle_s or not e.alive]
            workers = [self._idle.pop(k) for k in stale]
        for worker in workers:
            log.info("closing worker %d: idle for %.0f s", worker.pid, now - worker.last_used)
            worker.close()

    @property
    def spare_pid(self) -> int | None:
        """The spare worker's process id (None when there is none)."""
        return self._spare.pid if self._spare is not None else None

    def warm_up(self) -> None:
        """Starts the spare worker now (the server calls this at start), unless spares are off."""
        stale = None
        with self._lock:
            if self.spare_enabled and not self._usable(self._spare):
                stale, self._spare = self._spare, WorkerProcess(preload=True)
        if stale is not None:  # dead, or started for other job modules
            stale.close()
        self._start_reaper()

    def _checkout(self, key: str) -> WorkerProcess:
        """The key's idle worker, else the spare, else a new worker."""
        self.expire_idle()
        self._start_reaper()
        stale: list[WorkerProcess] = []
        with self._lock:
            kept = self._idle.pop(key, None)
            if kept is not None and self._usable(kept):
                return kept
            spare, self._spare = self._spare, None
            stale += [e for e in (kept, spare) if e is not None and not self._usable(e)]
            worker = spare if spare is not None and self._usable(spare) else WorkerProcess()
        for old in stale:
            old.close()
        return worker

    @staticmethod
    def _usable(worker: WorkerProcess | None) -> bool:
        """Alive, and started with the job modules this process would give it now (tests add some)."""
        return worker is not None and worker.alive and worker.job_modules == config().job_modules

    def _start_reaper(self) -> None:
        """A daemon thread that closes idle workers even when no request comes (started once)."""
        with self._lock:
            if self._reaper is not None:
                return
            self._reaper = threading.Thread(target=self._reap_forever, name="worker-reaper", daemon=True)
            self._reaper.start()

    def _reap_forever(self) -> None:
        while True:
            time.sleep(max(0.2, min(30.0, self.idle_s / 2)))
            self.expire_idle()

    def _checkin(self, key: str, worker: WorkerProcess) -> None:
        """Keeps a healthy worker for its key; closes the least recently used beyond `size`; replaces the spare.

        The next spare starts only now, after the request: its TensorFlow import would
        otherwise compete for the CPU with the request that took the previous one.
        """
        keep = worker.alive and worker.rss_mb() <= self.keep_mb
        if worker.alive and not keep:
            log.info("closing worker %d: %.0f MB is more than QW_WORKER_KEEP_MB", worker.pid, worker.rss_mb())
        closing = [] if keep else [worker]
        with self._lock:
            if keep:
                old = self._idle.pop(key, None)  # two requests on one key ran at once: keep the newer
                if old is not None:
                    closing.append(old)
                self._idle[key] = worker
            while len(self._idle) > self.size:
                closing.append(self._idle.popitem(last=False)[1])
        for old in closing:
            old.close()
        self.warm_up()
