"""The port picker behind every server the tests and ci/cluster start (ci/lib/ports.py).

A port from the ephemeral range can be taken by an outgoing connection's source port before the server binds it: kwok
died with "address already in use" under load that way.
"""

from __future__ import annotations

import socket
import subprocess
import sys

from harness import REPO, _ports_module


def test_ports_are_free_distinct_and_never_ephemeral() -> None:
    ports = _ports_module()
    low, high = ports.ephemeral_range()
    picked = ports.free_ports(8)
    assert len(set(picked)) == 8
    assert all(not low <= p <= high for p in picked), (picked, (low, high))
    for port in picked:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_in_use_is_never_handed_out() -> None:
    ports = _ports_module()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", ports.free_port()))
        listener.listen()
        taken = listener.getsockname()[1]
        assert not ports.bindable(taken)
        assert taken not in {ports.free_port() for _ in range(50)}


def test_command_line_prints_the_ports_on_one_line() -> None:
    out = subprocess.run([sys.executable, str(REPO / "ci" / "lib" / "ports.py"), "4"], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    assert len(set(map(int, out.split()))) == 4 and out.count("\n") == 1
