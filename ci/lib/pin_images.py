"""Pin the images of a chart's values.yaml, as `make release` does in the packaged chart (ci/release.sh).

    python3 ci/lib/pin_images.py VALUES.yaml BLOCK KEY=VALUE...

sets `<BLOCK>.image.<KEY>` (e.g. `training` `digest=sha256:...` `cudaDigest=sha256:...`) by rewriting those lines
only, so every comment of values.yaml (helm-docs' source, `helm show values`) stays as it is. Each key must already
be in the block; values are written quoted.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def pin(text: str, block: str, values: dict[str, str]) -> str:
    """values.yaml text with the top-level `block:`'s `image:` keys set to `values`."""
    start = re.search(rf"^{block}:\n(?:.*\n)*?  image:\n", text, re.M)
    if not start:
        raise SystemExit(f"no {block}.image in values.yaml")
    head, rest = text[: start.end()], text[start.end():]
    for key, value in values.items():
        # only the image block's own lines (4 spaces deep), before the block's next key at 2 spaces
        image, after = re.match(r"((?:    .*\n)*)(.*)", rest, re.S).groups()
        image, n = re.subn(rf"^(    {key}:).*$", rf'\g<1> "{value}"', image, count=1, flags=re.M)
        if n != 1:
            raise SystemExit(f"no {block}.image.{key} in values.yaml")
        rest = image + after
    return head + rest


def main(argv: list[str]) -> None:
    if len(argv) < 3 or not all("=" in kv for kv in argv[2:]):
        raise SystemExit(__doc__)
    path, block = Path(argv[0]), argv[1]
    path.write_text(pin(path.read_text(), block, dict(kv.split("=", 1) for kv in argv[2:])))


if __name__ == "__main__":
    main(sys.argv[1:])
