"""`JobClient`: runs a typed job request (quant_core.serving.protocol) and returns its typed answer.

One client for every caller: the web app runs jobs in a warm worker of its pool
(`JobClient.warm`), `python -m ui.prewarm` in a one-shot worker (`JobClient.one_shot`), the CLI
and bench in their own process (`JobClient.in_process`: the same handlers, no pipe, nothing
serialised). Whichever it is, the caller gets typed progress messages and a typed answer.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from quant_core.errors import Cancelled
from quant_core.serving import protocol
from quant_core.serving.pool import WarmPool
from quant_core.serving.protocol import JobRequest, Message, MessageReader
from quant_core.serving.worker import Limits, run_job

A = TypeVar("A")


class Transport(Protocol):
    """Carries one job to a worker process and its JSON answer back (WarmPool.run's shape, without the key)."""

    def __call__(self, name: str, payload: dict[str, Any], *, limits: Limits | None,
                 on_progress: Callable[[dict[str, Any]], None], on_wait: Callable[[], None] | None,
                 cancel: threading.Event | None, watch: Callable[[], None] | None) -> Any: ...


class JobClient:
    """Runs job requests through one transport (a warm worker, a one-shot worker) or in this process."""

    def __init__(self, transport: Transport | None) -> None:
        """`transport` None runs the handlers in this process (see `in_process`)."""
        self._transport = transport

    @classmethod
    def warm(cls, pool: WarmPool, key: str) -> JobClient:
        """Jobs on the pool's warm worker for `key` (the same model and preprocessing reach the same worker)."""
        def transport(name: str, payload: dict[str, Any], **options: Any) -> Any:
            return pool.run(key, name, payload, **options)
        return cls(transport)

    @classmethod
    def one_shot(cls) -> JobClient:
        """Each job in a fresh worker process, closed when it ends (cancel is not offered: nothing supersedes it)."""
        def transport(name: str, payload: dict[str, Any], *, cancel: threading.Event | None = None,
                      **options: Any) -> Any:
            return run_job(name, payload, **options)
        return cls(transport)

    @classmethod
    def in_process(cls) -> JobClient:
        """The handlers run in this process (the CLI, bench): no worker, no time or memory limit."""
        importlib.import_module("quant_core.serving.jobs")  # registers the handlers
        return cls(None)

    def run(self, request: JobRequest[A], *, on_progress: Callable[[Message], None] | None = None,
            on_wait: Callable[[], None] | None = None, cancel: threading.Event | None = None,
            limits: Limits | None = None, watch: Callable[[], None] | None = None) -> A:
        """The request's answer; progress messages arrive as their types while it runs.

        Setting `cancel` stops the job at its next progress report (`Cancelled`). `watch` is
        called while the job runs, whether or not it reports (about every 0.1 s in a worker, at
        every report in this process): what it raises stops the job, and kills its worker.

        Raises:
            QuantError: the job refused its input (its own class and one-line message).
            WorkerError: the worker crashed, ran out of time or memory.
            InternalError: the job hit a bug.
        """
        report = on_progress or (lambda message: None)
        if self._transport is None:
            return self._here(request, report, cancel, watch)
        reader = MessageReader()
        raw = self._transport(request.job, protocol.encode_request(request), limits=limits,
                              on_progress=lambda message: report(reader.decode(message)), on_wait=on_wait,
                              cancel=cancel, watch=watch)
        return protocol.decode_answer(request, raw)

    @staticmethod
    def _here(request: JobRequest[A], report: Callable[[Message], None], cancel: threading.Event | None,
              watch: Callable[[], None] | None) -> A:
        def checked(message: Message) -> None:
            if cancel is not None and cancel.is_set():
                raise Cancelled("stopped: a newer request replaced this one")
            if watch is not None:
                watch()
            report(message)
        return protocol.HANDLERS[type(request)](request, checked)
