"""What a Ray run says about its nodes: only a node that was there when the run began can be lost during it.

Ray's GCS marks a killed node dead only after its health checks time out (seconds), so a node killed just
before a run is still "Alive" in `ray.nodes()` when the run begins: its raylet's port, which now refuses, tells.
The raylets here are real listening sockets on loopback; the GCS's view is the list `ray.nodes()` returns.
"""

from __future__ import annotations

import socket

from quant_core.serving.executors import _Watch


class _GcsView:
    """What `ray.nodes()` says (the only part of Ray `_Watch` reads besides the head's address)."""

    def __init__(self, nodes: dict[str, int]) -> None:
        self.alive = dict(nodes)  # node id -> raylet port

    def nodes(self) -> list[dict]:
        return [{"NodeID": node, "Alive": True, "NodeManagerAddress": "127.0.0.1", "NodeManagerPort": port}
                for node, port in self.alive.items()]


def _raylet() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    return listener


def _gone_port() -> int:
    """A loopback port where nothing listens any more."""
    listener = _raylet()
    port = listener.getsockname()[1]
    listener.close()
    return port


def _watch(gcs: _GcsView) -> _Watch:
    return _Watch(gcs, "127.0.0.1:1", grace_s=15)


def test_a_node_that_died_before_the_run_is_not_lost_during_it():
    a, b = _raylet(), _raylet()
    try:
        gcs = _GcsView({"a" * 12: a.getsockname()[1], "b" * 12: b.getsockname()[1], "dead" * 3: _gone_port()})
        watch = _watch(gcs)  # "dead…" is still Alive for the GCS, its raylet refuses already
        del gcs.alive["dead" * 3]  # the GCS noticed during the run
        assert watch.nodes_lost() == ()
    finally:
        a.close()
        b.close()


def test_a_node_lost_during_the_run_is_named_whether_the_gcs_noticed_or_not():
    a, b, c = _raylet(), _raylet(), _raylet()
    try:
        gcs = _GcsView({"a" * 12: a.getsockname()[1], "b" * 12: b.getsockname()[1], "c" * 12: c.getsockname()[1]})
        watch = _watch(gcs)
        b_port = b.getsockname()[1]
        b.close()  # its raylet is gone; the GCS still says Alive
        del gcs.alive["c" * 12]  # marked dead by the GCS
        assert watch.nodes_lost() == (
            f"Ray node 127.0.0.1:{b_port} (id bbbbbbbb) was lost during the run; Ray ran the tasks it held again on "
            "the other nodes",
            f"Ray node 127.0.0.1:{c.getsockname()[1]} (id cccccccc) was lost during the run; Ray ran the tasks it "
            "held again on the other nodes")
    finally:
        a.close()
        c.close()
