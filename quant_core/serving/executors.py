"""Where shard work runs: in this process (`local`, the default) or on Ray (`ray`), on one machine or a cluster.

An executor maps a picklable function over tasks with one shared payload (the models),
yielding results as they complete. The shared payload is sent once: Ray keeps it in its
object store (one copy per node, read without copying by the workers there). Ray is an
optional extra (requirements-ray.txt); asking for it without it installed is a user error.

Configuration: `make_executor(name, address=...)`, else $QW_EXECUTOR (local|ray),
$QW_RAY_ADDRESS (an existing cluster, e.g. "auto" or "ray://head:10001"); without an
address, a local Ray with $QW_RAY_CPUS CPUs (default: the CPUs this process may use).

A local Ray listens on 127.0.0.1 only: whoever can reach a Ray node can run code on it, so
one nobody else needs stays off the network. A cluster's addresses are its operator's choice.
"""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import logging
import os
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from quant_core.config import config
from quant_core.errors import InputError, QuantError, parse_choice

log = logging.getLogger(__name__)

Task = TypeVar("Task")
Shared = TypeVar("Shared")
Result = TypeVar("Result")

RAY_INSTALL_HINT = "pip install -r requirements-ray.txt"
_LOCAL_OBJECT_STORE_MB = 512  # a local Ray's shared memory for models and shard results
LOOPBACK = "127.0.0.1"  # where a local Ray's services listen (its node address)


class ExecutorKind(enum.StrEnum):
    """The executors there are."""

    LOCAL = "local"  # this process, one shard after another
    RAY = "ray"  # Ray tasks: a local Ray instance, or a cluster at an address


class ExecutorError(QuantError):
    """The executor could not run the work (a worker kept dying, a cluster cannot be reached)."""


class Executor(Protocol):
    """Runs `fn(task, shared)` for every task; results come as they complete, with the task's position."""

    description: str  # for reports, e.g. "ray (4 CPUs, cluster at auto)"
    workers: int  # how many tasks run at once

    def run(self, fn: Callable[[Any, Any], Any], tasks: Sequence[Any],
            shared: Any) -> Generator[tuple[int, Any], None, None]:
        """Yields (task position, result); closing the iterator early cancels the work still pending."""
        ...

    def close(self) -> None:
        """Releases what the executor started."""
        ...


class LocalExecutor:
    """Runs tasks one after another in this process: today's behaviour and the reference for the others."""

    description = "local (this process)"
    workers = 1

    def run(self, fn: Callable[[Task, Shared], Result], tasks: Sequence[Task],
            shared: Shared) -> Generator[tuple[int, Result], None, None]:
        for position, task in enumerate(tasks):
            yield position, fn(task, shared)

    def close(self) -> None:
        pass


class RayExecutor:
    """Ray tasks with retries: a worker that dies mid-task has its task run again elsewhere.

    Joins the cluster at `address` or, without one, starts a local Ray bounded to `cpus`
    CPUs and listening on 127.0.0.1 only (joins whatever Ray this process already started,
    e.g. in tests). At most two tasks per CPU are in flight, so results stream back instead
    of piling up.
    """

    def __init__(self, *, address: str | None = None, cpus: int | None = None, max_retries: int = 3) -> None:
        ray = _import_ray()
        self._started = False
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                       "runtime_env": _runtime_env(remote=bool(address))}
            if not address:  # not $TMPDIR: a job's scratch folder is removed when the job ends, Ray's must stay
                options["_temp_dir"] = str(config().ray_tmpdir)
            try:
                if address:
                    ray.init(address=address, **options)
                else:
                    with _loopback_node():
                        ray.init(num_cpus=cpus or _local_cpus(), object_store_memory=_LOCAL_OBJECT_STORE_MB * 1024**2,
                                 _node_ip_address=LOOPBACK, dashboard_host=LOOPBACK, **options)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise ExecutorError(f"cannot start or reach Ray{f' at {address}' if address else ''}: "
                                    f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
            self._started = True
            if not address:
                self._check_loopback(ray)
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        where = f"cluster at {address}" if address else "local"
        self.description = f"ray ({self.workers} CPUs, {where})"
        self._max_retries = max_retries
        self._remote: Any = None  # the remote wrapper of `_apply`, made once

    def _check_loopback(self, ray) -> None:
        """Stops a local Ray that came up on a network address (a Ray that ignores `_loopback_node`)."""
        node = ray.util.get_node_ip_address()
        if not ipaddress.ip_address(node).is_loopback:
            self.close()
            raise ExecutorError(f"a local Ray would listen on {node}, not only on {LOOPBACK}: not started; "
                                "give --ray-address (QW_RAY_ADDRESS) of a cluster you secured instead")

    def run(self, fn: Callable[[Task, Shared], Result], tasks: Sequence[Task],
            shared: Shared) -> Generator[tuple[int, Result], None, None]:
        ray = _import_ray()
        if self._remote is None:
            self._remote = ray.remote(num_cpus=1, max_retries=self._max_retries, retry_exceptions=False)(_apply)
        remote = self._remote
        fn_ref, shared_ref = ray.put(fn), ray.put(shared)  # once: every task reads these copies
        pending: dict[Any, int] = {}
        submitted = 0
        try:
            while pending or submitted < len(tasks):
                while submitted < len(tasks) and len(pending) < 2 * self.workers:
                    pending[remote.remote(fn_ref, tasks[submitted], shared_ref)] = submitted
                    submitted += 1
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    position = pending.pop(ref)
                    yield position, _get(ray, ref, position)
        finally:
            for ref in pending:  # cancelled or failed: stop the work still queued or running
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started:
            _import_ray().shutdown()
            self._started = False


def make_executor(kind: ExecutorKind | str | None = None, *, address: str | None = None,
                  cpus: int | None = None) -> Executor:
    """The executor asked for, else the one $QW_EXECUTOR names (default local).

    Raises:
        InputError: an unknown executor, or Ray asked for and not installed.
        ExecutorError: Ray cannot be started or reached.
    """
    settings = config()
    kind = parse_choice(ExecutorKind, kind or settings.executor, "executor")
    if kind is ExecutorKind.LOCAL:
        if address:
            raise InputError("--ray-address needs --executor ray")
        return LocalExecutor()
    return RayExecutor(address=address or settings.ray_address, cpus=cpus or settings.ray_cpus)


def _apply(fn: Callable[[Task, Shared], Result], task: Task, shared: Shared) -> Result:
    """Runs in a Ray worker: any picklable callable (a function, a partial) on one task."""
    return fn(task, shared)


def _import_ray():
    try:
        import ray  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise InputError(f"the Ray executor needs Ray, which is not installed here: {RAY_INSTALL_HINT}") from None
    return ray


@contextlib.contextmanager
def _loopback_node() -> Iterator[None]:
    """While a local Ray starts, its node address may be 127.0.0.1, so every service it starts listens there only.

    Ray 2.60 replaces a loopback node address by the machine's external one (a node must be
    reachable by the others) unless cluster support is off, its RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER
    switch, read once when ray is imported: the switch is turned off while this process starts
    a Ray that is no cluster. `_check_loopback` verifies the outcome.
    """
    from ray._private import ray_constants  # pylint: disable=import-outside-toplevel

    before = getattr(ray_constants, "ENABLE_RAY_CLUSTER", True)  # another Ray without it: `_check_loopback` judges
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


def _get(ray, ref, position: int):
    """A task's result; its own error (a user error such as an unreadable model) is re-raised as itself."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        cause = err.cause if isinstance(getattr(err, "cause", None), BaseException) else None
        if isinstance(cause, QuantError):
            raise cause from None
        raise
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
            ray.exceptions.ObjectLostError) as err:
        raise ExecutorError(f"task {position + 1} failed after every retry: {type(err).__name__}") from None


def _local_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _runtime_env(*, remote: bool) -> dict[str, Any]:
    """How Ray workers find quant_core: this checkout's folder locally, an uploaded copy on a cluster.

    Cluster nodes need quant_core's own dependencies (numpy, pillow, ai-edge-litert) installed.
    """
    import quant_core  # pylint: disable=import-outside-toplevel

    if remote:
        return {"py_modules": [quant_core]}
    here = os.path.dirname(os.path.dirname(os.path.abspath(quant_core.__file__)))
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)}}
