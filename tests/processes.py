"""Processes as /proc shows them: a process tree, and the TCP sockets its processes listen on (Linux)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path


def process_tree(root: int) -> list[int]:
    """`root` and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def listening_sockets(pids: list[int]) -> list[tuple[str, str]]:
    """(process name, local address) of every listening TCP socket the processes hold."""
    owner: dict[str, str] = {}
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    owner[link[8:-1]] = name
        except OSError:  # ended meanwhile
            continue
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in owner:  # 0A: LISTEN
                found.append((owner[fields[9]], _address(fields[1])))
    return found


def _address(hex_address: str) -> str:
    """A /proc/net/tcp* local address (hex IP in little-endian 32-bit words, hex port) as "ip port"."""
    raw, port = (bytes.fromhex(part) for part in hex_address.split(":"))
    ip = ipaddress.ip_address(b"".join(raw[k:k + 4][::-1] for k in range(0, len(raw), 4)))
    return f"{ip} {int.from_bytes(port, 'big')}"


def loopback(address: str) -> bool:
    """True for an address on 127.0.0.0/8 or ::1 (also as an IPv4-mapped IPv6 address)."""
    ip = ipaddress.ip_address(address.split()[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)
