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

import collections
import contextlib
import enum
import ipaddress
import logging
import os
import socket
import time
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
_TICK_S = 1.0  # how long a run waits for a result before it looks at its head and its hung tasks


class ExecutorKind(enum.StrEnum):
    """The executors there are."""

    LOCAL = "local"  # this process, one shard after another
    RAY = "ray"  # Ray tasks: a local Ray instance, or a cluster at an address


class ExecutorError(QuantError):
    """The executor could not run the work (a worker kept dying, a cluster cannot be reached)."""


class ClusterLost(ExecutorError):
    """The cluster's head stopped answering mid-run: the results already yielded stand, the rest is not coming."""


class Executor(Protocol):
    """Runs `fn(task, shared)` for every task; results come as they complete, with the task's position."""

    description: str  # for reports, e.g. "ray (4 CPUs, cluster at auto)"
    workers: int  # how many tasks run at once
    incidents: tuple[str, ...]  # what went wrong in the last run and was overcome, one line each

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
    incidents: tuple[str, ...] = ()

    def run(self, fn: Callable[[Task, Shared], Result], tasks: Sequence[Task],
            shared: Shared) -> Generator[tuple[int, Result], None, None]:
        for position, task in enumerate(tasks):
            yield position, fn(task, shared)

    def close(self) -> None:
        pass


class RayExecutor:
    """Ray tasks with retries: a worker that dies mid-task, or a node lost, has its task run again elsewhere.

    Joins the cluster at `address` or, without one, starts a local Ray bounded to `cpus`
    CPUs and listening on 127.0.0.1 only (joins whatever Ray this process already started,
    e.g. in tests). At most two tasks per CPU are in flight, so results stream back instead
    of piling up. A cluster that cannot be reached is refused within `connect_timeout_s`;
    a task not back `shard_timeout_s` after it was handed out is stopped and run again; a head
    that stops answering for `head_grace_s` ends the run with `ClusterLost` (before Ray itself
    would end this process, 60 s after losing its head). What was overcome is in `incidents`.
    """

    def __init__(self, *, address: str | None = None, cpus: int | None = None, max_retries: int = 3,
                 shard_timeout_s: float | None = None, head_grace_s: float | None = None,
                 connect_timeout_s: float | None = None) -> None:
        settings = config()
        self._address, self._cpus, self._max_retries = address, cpus, max_retries
        self._shard_timeout = settings.shard_timeout_s if shard_timeout_s is None else shard_timeout_s
        self._head_grace = settings.ray_head_grace_s if head_grace_s is None else head_grace_s
        self._connect_timeout = settings.ray_connect_timeout_s if connect_timeout_s is None else connect_timeout_s
        self._started = False
        self._remote: Any = None  # the remote wrapper of `_apply`, made once per connection
        self.incidents: tuple[str, ...] = ()
        self.workers, self.description = 1, "ray"
        self._join()

    def _join(self) -> None:
        """Starts or joins Ray (again, after a lost head), and reads how many CPUs it has."""
        ray = _import_ray()
        address = self._address
        if ray.is_initialized() and address and not _joined(ray, address):
            ray.shutdown()  # this process is on another Ray (one connection per process): the one asked for wins
        if not ray.is_initialized():
            if address:
                _check_reachable(address, self._connect_timeout)
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                       "runtime_env": _runtime_env(remote=bool(address))}
            if not address:  # not $TMPDIR: a job's scratch folder is removed when the job ends, Ray's must stay
                options["_temp_dir"] = str(config().ray_tmpdir)
            try:
                if address:
                    with _joining(address, options):
                        ray.init(address=address, **options)
                else:
                    with _loopback_node():
                        ray.init(num_cpus=self._cpus or _local_cpus(),
                                 object_store_memory=_LOCAL_OBJECT_STORE_MB * 1024**2,
                                 _node_ip_address=LOOPBACK, dashboard_host=LOOPBACK, **options)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise ExecutorError(_join_failure(address, err)) from None
            self._started, self._remote = True, None
            if not address:
                self._check_loopback(ray)
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        where = f"cluster at {address}" if address else "local"
        self.description = f"ray ({self.workers} CPUs, {where})"

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
        head = _head_of(ray, self._address) if ray.is_initialized() else None
        if head is not None and not _answers(head, timeout_s=2.0):
            self.close(force=True)  # the head went away since the last run: Ray would end this process on first use
        if not ray.is_initialized():
            self._join()
        if self._remote is None:
            self._remote = ray.remote(num_cpus=1, max_retries=self._max_retries, retry_exceptions=False)(_apply)
        fn_ref, shared_ref = ray.put(fn), ray.put(shared)  # once: every task reads these copies
        watch = _Watch(ray, self._address, grace_s=self._head_grace)
        queue, hung = collections.deque(range(len(tasks))), [0] * len(tasks)
        pending: dict[Any, tuple[int, float]] = {}  # ref -> (task position, when it was handed out)
        incidents: list[str] = []
        try:
            while pending or queue:
                while queue and len(pending) < 2 * self.workers:
                    position = queue.popleft()
                    pending[self._remote.remote(fn_ref, tasks[position], shared_ref)] = (position, time.monotonic())
                done, _ = ray.wait(list(pending), num_returns=1, timeout=_TICK_S)
                for ref in done:
                    position, _ = pending.pop(ref)
                    yield position, _get(ray, ref, position)
                if not done:
                    watch.check_head()
                for position in self._stop_hung(ray, pending):
                    hung[position] += 1
                    if hung[position] > self._max_retries:
                        raise ExecutorError(f"task {position + 1} hung {hung[position]} times (not back within "
                                            f"{self._shard_timeout:.0f} s each time, QW_SHARD_TIMEOUT_S)")
                    incidents.append(f"task {position + 1} was not back within {self._shard_timeout:.0f} s: its "
                                     "worker was stopped and the task ran again")
                    queue.appendleft(position)
        finally:
            for ref in pending:  # cancelled or failed: stop the work still queued or running
                ray.cancel(ref, force=True)
            if watch.head_lost:
                self.close(force=True)  # Ray would end this process otherwise; the next run joins again
            self.incidents = tuple(incidents) + (() if watch.head_lost else watch.nodes_lost())

    def _stop_hung(self, ray, pending: dict[Any, tuple[int, float]]) -> list[int]:
        """Stops the tasks out for longer than the shard timeout (their workers are killed); their positions."""
        now, stopped = time.monotonic(), []
        for ref, (position, since) in list(pending.items()):
            if now - since > self._shard_timeout:
                ray.cancel(ref, force=True)
                del pending[ref]
                stopped.append(position)
        return stopped

    def close(self, *, force: bool = False) -> None:
        if self._started or force:
            _import_ray().shutdown()
            self._started, self._remote = False, None


class _Watch:
    """A run's view of the cluster: the nodes alive when it began, and whether its head still answers."""

    def __init__(self, ray, address: str | None, *, grace_s: float) -> None:
        self._ray, self._grace = ray, grace_s
        self._head = _head_of(ray, address)
        # Alive for the GCS, and its raylet still there: a node killed just before is marked dead only later
        nodes = {n["NodeID"]: (n["NodeManagerAddress"], int(n["NodeManagerPort"]))
                 for n in ray.nodes() if n.get("Alive")}
        self._nodes = {node: where for node, where in nodes.items() if not _refuses(where, timeout_s=1.0)}
        self._silent_since: float | None = None
        self.head_lost = False

    def check_head(self) -> None:
        """Raises ClusterLost once the head has refused connections for the grace period."""
        if self._head is None or _answers(self._head, timeout_s=2.0):
            self._silent_since = None
            return
        now = time.monotonic()
        self._silent_since = self._silent_since or now
        if now - self._silent_since >= self._grace:
            self.head_lost = True
            host, port = self._head
            raise ClusterLost(f"the Ray head at {host}:{port} stopped answering: the evaluation stopped, keeping the "
                              "shards done")

    def nodes_lost(self) -> tuple[str, ...]:
        """A line for every node alive at the start that is gone now (marked dead, or its raylet refuses)."""
        alive = {n["NodeID"] for n in self._ray.nodes() if n.get("Alive")}
        lost = [(node, where) for node, where in self._nodes.items()
                if node not in alive or _refuses(where, timeout_s=1.0)]
        return tuple(f"Ray node {host}:{port} (id {node[:8]}) was lost during the run; Ray ran the tasks it held "
                     "again on the other nodes" for node, (host, port) in lost)


def _head_of(ray, address: str | None) -> tuple[str, int] | None:
    """Where the cluster's head listens: the address joined (a Ray Client's too), else this Ray's GCS."""
    if address and address != "auto":
        return _host_port(address)
    try:
        gcs = ray.get_runtime_context().gcs_address
    except AttributeError:  # a Ray Client connection has none
        return None
    return _host_port(gcs) if gcs else None


def _joined(ray, address: str) -> bool:
    """Whether this process's Ray connection is to the cluster at `address` ("auto" and Ray Client: taken as yes)."""
    asked = _host_port(address)
    if asked is None or address.startswith("ray://"):
        return True
    current = _head_of(ray, None)
    return current == asked or (current is not None and current[1] == asked[1]
                                and _is_loopback(current[0]) and _is_loopback(asked[0]))


def _host_port(address: str) -> tuple[str, int] | None:
    """host and port of "host:port" or "ray://host:port" (None if it names no port)."""
    rest = address.split("://", 1)[-1].rstrip("/")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _connect(where: tuple[str, int], *, timeout_s: float) -> OSError | None:
    """None when something accepts a TCP connection there, else why not."""
    try:
        socket.create_connection(where, timeout=timeout_s).close()
    except OSError as err:
        return err
    return None


def _answers(where: tuple[str, int], *, timeout_s: float) -> bool:
    """Whether something accepts a TCP connection there."""
    return _connect(where, timeout_s=timeout_s) is None


def _refuses(where: tuple[str, int], *, timeout_s: float) -> bool:
    """Whether nothing listens there any more: the connection is refused (a slow answer is not a refusal)."""
    return isinstance(_connect(where, timeout_s=timeout_s), ConnectionRefusedError)


def _check_reachable(address: str, timeout_s: float) -> None:
    """Refuses, in one line naming it, a cluster address where nothing answers (Ray itself would wait minutes)."""
    where = _host_port(address)
    if where is None:
        return  # "auto": Ray finds the cluster on this machine, or says it found none
    try:
        socket.create_connection(where, timeout=timeout_s).close()
    except TimeoutError:
        raise ExecutorError(f"cannot reach the Ray cluster at {address}: no answer within {timeout_s:.0f} s "
                            "(QW_RAY_CONNECT_TIMEOUT_S)") from None
    except OSError as err:
        raise ExecutorError(f"cannot reach the Ray cluster at {address}: {err.strerror or err}") from None


@contextlib.contextmanager
def _joining(address: str, options: dict[str, Any]) -> Iterator[None]:
    """A cluster on loopback is joined from loopback: Ray would swap 127.0.0.1 for this machine's external address.

    The driver's node is then 127.0.0.1 too (it must be the node of a raylet of the cluster).
    """
    where = _host_port(address)
    if where is None or address.startswith("ray://") or not _is_loopback(where[0]):
        yield
        return
    options["_node_ip_address"] = where[0]
    with _loopback_node():
        yield


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _join_failure(address: str | None, err: BaseException) -> str:
    """One line for a Ray that could not be started or joined; a refused token says how to give one."""
    causes, cause = [err], err.__cause__ or err.__context__
    while cause is not None and len(causes) < 8:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    # Ray 2.60 words the refusal into a RuntimeError's text (the AuthenticationError is not chained)
    if address and any("AuthenticationError" in f"{type(c).__name__} {c}" for c in causes):
        return (f"the Ray cluster at {address} refused this process's token: set RAY_AUTH_MODE=token and "
                "RAY_AUTH_TOKEN_PATH (or RAY_AUTH_TOKEN) as on the cluster's nodes")
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    return f"cannot start or reach Ray{f' at {address}' if address else ''}: {first}"


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
