"""One rank of `trainer check-distributed`: `torchrun ... -m trainer.distributed.ddp_probe --out FILE --hold S`.

Joins the process group over gloo (the rendezvous torchrun set up: MASTER_ADDR, RANK, WORLD_SIZE), checks an
all-reduce adds up to the world size, gathers every rank's host name, then keeps all-reducing for --hold seconds so
that a lost rank fails the check. Global rank 0 writes the result as JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from datetime import timedelta
from pathlib import Path

TIMEOUT = timedelta(seconds=120)  # a peer that never answers fails the collective after this


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="trainer.distributed.ddp_probe")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--hold", type=float, default=0.0)
    args = parser.parse_args(argv)
    import torch
    import torch.distributed as dist

    started = time.monotonic()
    dist.init_process_group("gloo", timeout=TIMEOUT)
    rank, world = dist.get_rank(), dist.get_world_size()
    total = torch.ones(1)
    dist.all_reduce(total)
    hosts: list[object] = [None] * world
    dist.all_gather_object(hosts, socket.gethostname())
    rendezvous = time.monotonic() - started
    print(f"ddp_probe: rank {rank} of {world} on {socket.gethostname()}: all-reduce {int(total.item())}", flush=True)
    if rank == 0:
        result = {"world_size": world, "all_reduce": int(total.item()), "hosts": hosts, "rendezvous_seconds": rendezvous}
        partial = args.out.with_suffix(".tmp")
        partial.write_text(json.dumps(result))
        partial.rename(args.out)
    deadline = time.monotonic() + args.hold
    while time.monotonic() < deadline:  # a rank that goes away makes this raise on every other rank
        dist.all_reduce(torch.ones(1))
        time.sleep(1)
    dist.barrier()
    dist.destroy_process_group()
    return 0 if int(total.item()) == world else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
