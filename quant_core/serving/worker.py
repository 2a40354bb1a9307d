"""Running jobs in worker processes with a time limit and a memory limit.

TensorFlow's converter can abort the whole process (C++ check failures) or run for a very
long time on odd graphs, and a model file is untrusted input. Jobs therefore run in a
child process (`python -m quant_core.serving.worker`): a crash, a timeout or a memory overrun ends
that child and becomes a one-line `WorkerError` for that request, while the caller (the web
server) keeps serving everyone else and never imports TensorFlow itself. A bounded pool
limits how many jobs run at once.

Each job gets a private temporary folder (its TMPDIR), removed when the job ends however it
ends, so converter scratch files never accumulate; folders left by a server that was itself
killed are removed by the next job.

Protocol: the parent writes one JSON job to the child's stdin; the child answers with JSON
lines on a private descriptor: {"progress": ...} while it works, then {"result": ...},
{"error": <message>, "kind": <QuantError subclass name>} for a user error (re-raised here as
that class), or {"internal": <traceback>} for a bug (logged here under an incident id and
raised as `InternalError`). The backends' output and the child's logging go to its stderr, a log
file that is relayed to this process's logging ("quant_core.serving.worker") when the job ends: at
DEBUG level when it succeeded, as a warning or with the incident when it did not.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quant_core.config import config
from quant_core.errors import Cancelled, QuantError, report_internal

_POOL = threading.BoundedSemaphore(config().workers)
_POLL_S = 0.1
_TMP_PREFIX = "qw-job-"
_CANCEL_GRACE_S = config().cancel_grace_s
_LOG_TAIL_LINES = 200  # of a failed job's output, logged with the failure
log = logging.getLogger(__name__)


class WorkerError(QuantError):
    """A job's worker crashed, ran out of time or memory, or failed unexpectedly."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one job.

    Attributes:
        timeout_s: wall-clock seconds before the worker is killed.
        memory_mb: resident memory (RSS) above which the worker is killed.
    """

    timeout_s: float = field(default_factory=lambda: config().job_timeout_s)
    memory_mb: int = field(default_factory=lambda: config().job_memory_mb)


JOBS: dict[str, Callable[[dict[str, Any], Callable[[dict[str, Any]], None]], Any]] = {}


def job(name: str):
    """Registers a function as a worker job: (payload, progress) -> JSON-ready result."""
    def register(fn):
        JOBS[name] = fn
        return fn
    return register


def run_job(name: str, payload: dict[str, Any], *, limits: Limits | None = None,
            on_progress: Callable[[dict[str, Any]], None] | None = None,
            on_wait: Callable[[], None] | None = None, watch: Callable[[], None] | None = None) -> Any:
    """Runs a registered job in a fresh worker process and returns its result (`watch`: see WorkerProcess.run).

    Raises:
        QuantError: the job rejected its input: the job's own error class and one-line message.
        WorkerError: the worker crashed, timed out or used too much memory.
        InternalError: the job hit a bug (logged with the worker's traceback and output).
    """
    with worker_slot(on_wait):
        process = WorkerProcess()
        try:
            return process.run(name, payload, limits=limits, on_progress=on_progress, watch=watch)
        finally:
            process.close()


@contextmanager
def worker_slot(on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """One of the QW_WORKERS slots for a running job; `on_wait` is called first when all are taken."""
    if not _POOL.acquire(blocking=False):
        if on_wait:
            on_wait()
        _POOL.acquire()
    try:
        yield
    finally:
        _POOL.release()


class WorkerProcess:
    """One worker process (`python -m quant_core.serving.worker`) that runs jobs one at a time.

    A one-shot worker runs one job (`run_job`); a warm one (quant_core.serving.pool.WarmPool) keeps
    what its jobs loaded for the next one. Each job gets its own private temporary folder
    and its own time and memory limits; a job that overruns them, crashes the process or
    is abandoned by its caller ends the whole process (`alive` turns False), so nothing a
    broken job left behind can serve the next request.
    """

    def __init__(self, *, preload: bool = False) -> None:
        """Starts the process; with `preload` it imports TensorFlow at once (a spare that is ready sooner)."""
        read_fd, write_fd = os.pipe()
        self._output = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process; closed by kill()
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, "-m", "quant_core.serving.worker", str(write_fd), *(["--preload"] if preload else [])],
            stdin=subprocess.PIPE, stdout=self._output, stderr=self._output, pass_fds=(write_fd,),
            cwd=os.getcwd(), start_new_session=True)
        os.close(write_fd)
        self._channel = os.fdopen(read_fd, "rb", buffering=0)
        self._lines = _LineReader(self._channel)
        self.job_modules = config().job_modules  # extra jobs it registered (tests): its environment is this one
        self.jobs = 0  # jobs answered by this process
        self.last_used = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        """True while the process runs (it is killed when a job breaks a limit or is abandoned)."""
        return self.proc.poll() is None

    def rss_mb(self) -> float:
        """The process's resident memory in MB."""
        return _rss_mb(self.proc.pid)

    def run(self, name: str, payload: dict[str, Any], *, limits: Limits | None = None,
            on_progress: Callable[[dict[str, Any]], None] | None = None,
            cancel: threading.Event | None = None, watch: Callable[[], None] | None = None) -> Any:
        """Runs one job in this process with its limits; see `run_job` for what it raises.

        Setting `cancel` asks the job to stop at its next progress report (a superseded
        request): it raises `Cancelled` and the process stays, with what it loaded, for the
        next request; a job that does not stop within QW_CANCEL_GRACE_S is killed. If the
        caller is interrupted (a progress callback raises, or `watch`, which is called about
        every 0.1 s whether or not the job reports, raises), the process is killed: no job
        outlives its request.
        """
        limits = limits or Limits()
        if cancel is not None and cancel.is_set():  # superseded before it started: the worker is not touched
            raise Cancelled("stopped: a newer request replaced this one")
        _remove_orphaned_job_dirs()
        scratch = tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{os.getpid()}.")
        where = f"job {name!r} in worker process {self.proc.pid}"
        self._output.seek(0, os.SEEK_END)
        start = self._output.tell()
        try:
            if not self.alive:
                raise WorkerError("the worker process has stopped; run the request again")
            assert self.proc.stdin is not None  # stdin=PIPE
            try:
                self.proc.stdin.write((json.dumps({"job": name, "payload": payload, "tmp": scratch}) + "\n").encode())
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass  # the process died meanwhile: reported below as a crash
            try:
                answer = self._await_answer(limits, on_progress or (lambda p: None), cancel, watch)
            except BaseException as err:
                self.kill()
                if isinstance(err, (WorkerError, Cancelled)):
                    log.warning("%s stopped: %s%s", where, err, self._tail(start))
                raise
            if answer is None and cancel is not None and cancel.is_set():
                raise Cancelled("stopped: a newer request replaced this one")  # killed while it was starting
            if answer is None:
                code = self.proc.wait()
                reason = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
                log.warning("%s crashed (%s)%s", where, reason, self._tail(start))
                raise WorkerError(_crash_message(code))
            if "internal" in answer:  # a bug may have left the process in any state: it serves no one else
                self.kill()
                raise report_internal(context=where, details=answer["internal"] + self._tail(start))
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s ended%s", where, self._tail(start))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            self.jobs += 1
            self.last_used = time.monotonic()
        if "error" in answer:
            raise _user_error(answer.get("kind", ""), answer["error"])
        return answer["result"]

    def _await_answer(self, limits: Limits, on_progress, cancel: threading.Event | None,
                      watch: Callable[[], None] | None = None) -> dict[str, Any] | None:
        """Relays progress until the job answers or the process ends; kills it at its time or memory limit."""
        deadline = time.monotonic() + limits.timeout_s
        asked: float | None = None  # when the job was asked to stop
        while True:
            for message in self._lines.read(timeout=_POLL_S):
                if "progress" not in message:
                    return message
                on_progress(message["progress"])
            if watch is not None:
                watch()
            if self.proc.poll() is not None and self._lines.closed:
                return None
            if cancel is not None and cancel.is_set():
                if asked is None:
                    asked = time.monotonic()
                    with contextlib.suppress(ProcessLookupError):  # ended meanwhile: its answer or crash is read next
                        os.kill(self.proc.pid, signal.SIGUSR1)
                elif time.monotonic() - asked > _CANCEL_GRACE_S:
                    raise Cancelled(f"the request was superseded; its job did not stop within "
                                    f"{_CANCEL_GRACE_S:.0f} s and was killed")
            if time.monotonic() > deadline:
                raise WorkerError(f"the job took longer than {limits.timeout_s:.0f} s and was stopped")
            if self.rss_mb() > limits.memory_mb:
                raise WorkerError(f"this request needed more than {limits.memory_mb} MB of memory, the server's "
                                  "limit per request (QW_JOB_MEMORY_MB), and was stopped; try fewer images or "
                                  "variants, or a smaller model")

    def _tail(self, start: int) -> str:
        """The last lines this process wrote since `start` (the backends' output, its logging), for the server's log."""
        self._output.seek(start)
        lines = self._output.read().decode("utf-8", errors="replace").splitlines()[-_LOG_TAIL_LINES:]
        return "\n--- worker output ---\n" + "\n".join(lines) if lines else ""

    def close(self, timeout_s: float = 5.0) -> None:
        """Ends the process (it exits when its input closes; killed if it does not) and frees its files."""
        if self.alive and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=timeout_s)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()
        for stream in (self.proc.stdin, self._channel, self._output):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass

    def kill(self) -> None:
        """Kills the process and anything it started (its files stay readable until `close`)."""
        if self.alive:
            _kill(self.proc)
        else:
            self.proc.wait()


# What a worker's death by each signal most likely means, for the one line the user reads.
_CRASH_CAUSES = {
    signal.SIGKILL: "most likely the system stopped it because the machine ran out of memory; run it again, or "
                    "try fewer images or variants",
    signal.SIGSEGV: "the model crashed the TensorFlow Lite runtime (a memory fault in its native code), most likely "
                    "because the file is malformed; check that the model loads in LiteRT, or try another model",
    signal.SIGABRT: "a check inside the backend's native code failed; try another backend or variant",
}
_CRASH_CAUSES[signal.SIGBUS] = _CRASH_CAUSES[signal.SIGILL] = _CRASH_CAUSES[signal.SIGFPE] = \
    _CRASH_CAUSES[signal.SIGSEGV]


def _crash_message(code: int) -> str:
    """One line for a worker that ended without answering: the signal or exit code, and what it most likely means."""
    if code >= 0:
        return f"the worker process crashed (exit code {code}) while working on this input; run it again"
    sig = signal.Signals(-code)
    cause = _CRASH_CAUSES.get(sig, "run it again, or try another model")
    what = "was killed" if sig is signal.SIGKILL else "crashed"
    return f"the worker process {what} (signal {sig.name}) while working on this input: {cause}"


def _remove_orphaned_job_dirs() -> None:
    """Removes job folders whose server process is gone (it was killed before cleaning up)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_TMP_PREFIX}*"):
        owner = folder.name[len(_TMP_PREFIX):].split(".", 1)[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def _user_error(kind: str, message: str) -> QuantError:
    """The QuantError subclass named `kind` (as raised in the worker), or QuantError itself."""
    classes, todo = {}, [QuantError]
    while todo:
        cls = todo.pop()
        classes[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return classes.get(kind, QuantError)(message)


class _LineReader:
    """Non-blocking reader of JSON lines from a pipe."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self._buffer = b""
        self.closed = False

    def read(self, *, timeout: float) -> list[dict[str, Any]]:
        import select  # pylint: disable=import-outside-toplevel

        ready, _, _ = select.select([self._stream], [], [], timeout)
        if ready:
            chunk = self._stream.read(1 << 16)
            if not chunk:
                self.closed = True
            self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\n")
        return [json.loads(line) for line in complete if line.strip()]


def _rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _kill(proc: subprocess.Popen) -> None:
    """Kills the worker and anything it started."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def _lower_priority(by: int) -> None:
    """Lowers this process's CPU priority by `by` niceness steps, for the kernel's autogroups too.

    With autogroup scheduling (on by default in many Linux kernels) CPU time is shared first
    between sessions, then between the processes of each. A worker leads its own session, so
    its own niceness would only weigh it against itself: each worker would get as much CPU as
    the whole web server. Its session's niceness is set as well (allowed to any user: it only
    lowers the priority).
    """
    niceness = os.nice(by)
    with contextlib.suppress(OSError):  # no autogroups in this kernel, or /proc is not mounted
        Path("/proc/self/autogroup").write_text(f"{niceness}\n", encoding="ascii")


def _child(channel_fd: int, *, preload: bool = False) -> int:
    """Worker side: run each job read from stdin (one JSON line each), answer on the channel; exit at EOF."""
    stop = threading.Event()  # set by SIGUSR1: the parent cancelled the running job
    signal.signal(signal.SIGUSR1, lambda signum, frame: stop.set())
    channel = os.fdopen(channel_fd, "w", buffering=1)
    _lower_priority(config().worker_nice)  # batch work yields the CPU to the web server that shares the machine
    os.dup2(2, 1)  # the backends' chatter on stdout goes to the log with stderr
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    import importlib  # pylint: disable=import-outside-toplevel

    for module in ["quant_core.serving.jobs", *config().job_modules]:
        importlib.import_module(module)  # registers the jobs
    registry = importlib.import_module("quant_core.serving.worker").JOBS  # not __main__'s copy
    if preload:
        from quant_core import _quiet  # pylint: disable=import-outside-toplevel

        _quiet.silence_tf_logging()
        importlib.import_module("tensorflow")  # the ~3 s a spare worker spends before anyone waits for it

    def send(message: dict[str, Any]) -> None:
        channel.write(json.dumps(message) + "\n")

    def report(progress: Any) -> None:
        """Relays a job's progress; where a job reports progress it can stop, so a cancel takes effect here."""
        if stop.is_set():
            raise Cancelled("stopped: a newer request replaced this one")
        send({"progress": progress})

    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        stop.clear()
        for name in ("TMPDIR", "TEMP", "TMP"):  # this job's private folder (the backends' own C++ reads TMPDIR)
            os.environ[name] = request["tmp"]
        tempfile.tempdir = request["tmp"]
        try:
            send({"result": registry[request["job"]](request["payload"], report)})
        except QuantError as err:
            send({"error": str(err), "kind": type(err).__name__})
        except Exception:  # noqa: BLE001 - a bug: the parent logs this traceback under an incident id
            import traceback  # pylint: disable=import-outside-toplevel

            send({"internal": traceback.format_exc()})
    channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(_child(int(sys.argv[1]), preload="--preload" in sys.argv[2:]))
