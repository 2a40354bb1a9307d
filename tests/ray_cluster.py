"""A real multi-node Ray cluster on this machine, every part on 127.0.0.1, for the cluster tests and bench.

Each node is its own `ray start --block` process tree in its own session (a head, then
more nodes joining it), so a node is killed as a whole with one signal to its process
group, as a machine that goes away. Token authentication is on, with a token private to the
cluster: whoever joins needs `LoopbackCluster.env`.

Ray swaps a loopback address for this machine's external one when a node joins (a node must
be reachable by others); on one machine that address is not where the head listens, and
nothing should listen there anyway. Run as a script, this module is `ray` with that swap
turned off: `python tests/ray_cluster.py start ...`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
STARTED = "Ray runtime started"
NODE_MEMORY = 150 * 1024**2  # each node's object store: the models and shard results are small


@dataclass
class Node:
    """One `ray start --block` process tree."""

    process: subprocess.Popen
    head: bool

    def freeze(self) -> None:
        """Stops every process of the node (SIGSTOP): the shards it holds make no progress until it is killed."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def kill(self) -> None:
        """Every process of the node at once (SIGKILL to its process group), as a machine lost."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@dataclass
class LoopbackCluster:
    """A head and any number of nodes on 127.0.0.1; `address` is what a driver joins."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="qw-cluster-")))
    port: int = 0
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = self.port or _free_port()
        token = self.root / "token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a driver (or node) needs to be let in: the cluster's token."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.root / "token")}

    def start(self, *, nodes: int = 2, cpus: int = 1) -> LoopbackCluster:
        """The head, then `nodes - 1` more nodes, each with `cpus` CPUs; returns when all are up."""
        self.nodes.append(self._node(["--head", "--port", str(self.port), "--include-dashboard", "false"], cpus))
        for _ in range(nodes - 1):
            self.add_node(cpus=cpus)
        return self

    def add_node(self, *, cpus: int = 1) -> Node:
        node = self._node(["--address", self.address], cpus)
        self.nodes.append(node)
        return node

    def _node(self, role: list[str], cpus: int) -> Node:
        args = [sys.executable, __file__, "start", *role, "--node-ip-address", LOOPBACK, "--num-cpus", str(cpus),
                "--object-store-memory", str(NODE_MEMORY), "--temp-dir", str(self.root / "ray"),
                "--disable-usage-stats", "--block"]
        log = (self.root / f"node{len(self.nodes)}.log").open("w")
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   env=os.environ | self.env | {"RAY_USAGE_STATS_ENABLED": "0"})
        node = Node(process, head="--head" in role)
        _wait_for(lambda: STARTED in Path(log.name).read_text() or process.poll() is not None, 120)
        if process.poll() is not None:
            raise RuntimeError(f"a Ray node did not start: {Path(log.name).read_text()[-2000:]}")
        return node

    @property
    def head(self) -> Node:
        return next(n for n in self.nodes if n.head)

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
        self.nodes.clear()
        shutil.rmtree(self.root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _wait_for(ready, seconds: float) -> None:
    end = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > end:
            raise TimeoutError(f"not ready within {seconds:.0f} s")
        time.sleep(0.2)


def _ray_on_loopback() -> None:
    """`ray` with its loopback-to-external address swap off (see the module's docstring)."""
    from ray._private import services  # pylint: disable=import-outside-toplevel
    from ray.scripts.scripts import main  # pylint: disable=import-outside-toplevel

    services.resolve_ip_for_localhost = lambda host: host
    services.get_node_ip_address = lambda address=None: LOOPBACK
    sys.argv[0] = "ray"
    main()


if __name__ == "__main__":
    _ray_on_loopback()
