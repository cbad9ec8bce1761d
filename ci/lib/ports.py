"""Free TCP ports on 127.0.0.1 that stay free until the server we start binds them.

bind(0) hands out a port from the kernel's ephemeral range, the range every outgoing connection also takes its source
port from: between the pick and the server's own bind, a connection (kube-apiserver to etcd, a client to a test server)
can take it and the server dies with "address already in use" (seen with kwok under load). Ports outside that range are
never given to outgoing connections, so only a listener of someone else's can race us there.

    python3 ci/lib/ports.py [N]   print N distinct free ports on one line (default 1)
"""

from __future__ import annotations

import random
import socket
import sys

LOWEST = 20000  # below: well-known and registered services' ports


def ephemeral_range(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> tuple[int, int]:
    try:
        with open(path) as f:
            low, high = (int(p) for p in f.read().split()[:2])
        return low, high
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def candidates() -> list[int]:
    """Ports outside the ephemeral range, in random order (several callers at once rarely try the same one)."""
    low, high = ephemeral_range()
    ports = [p for p in range(LOWEST, 65536) if not low <= p <= high]
    random.SystemRandom().shuffle(ports)
    return ports


def bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def kernel_pick() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports(count: int = 1) -> list[int]:
    ports = candidates()
    if not ports:  # every port from LOWEST up is ephemeral here: the kernel's pick, racy as it is
        return sorted({kernel_pick() for _ in range(count * 4)})[:count]
    picked = [p for p in ports[: 200 + count] if bindable(p)][:count]
    if len(picked) < count:
        raise RuntimeError(f"fewer than {count} free ports on 127.0.0.1 outside the ephemeral range")
    return picked


def free_port() -> int:
    return free_ports(1)[0]


if __name__ == "__main__":
    print(*free_ports(int(sys.argv[1]) if len(sys.argv) > 1 else 1))
