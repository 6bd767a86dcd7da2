"""``python -m tests.faults.limited_web``: the real web app (``app.serve``) with its address
space capped at ``AS_LIMIT_BYTES``, as ``prlimit --as`` caps it (``RLIMIT_AS``): past the cap
an allocation fails (MemoryError), as a container's memory limit would end the pod. Scenario
16 (``tests/faults/test_gray_spool.py``) replays a spool far larger than the cap in it.

The cap is on address space, not resident memory: an idle worker already maps ~250 MB
(the interpreter, its libraries, a thread stack and an allocator arena per thread) of which
~70 MB is resident, so the cap leaves the replay ~50 MB to work in.
"""

from __future__ import annotations

import resource
import sys

AS_LIMIT_BYTES = 300 * 1024 * 1024


def main() -> int:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT_BYTES, AS_LIMIT_BYTES))
    from app import serve  # under the cap from the first import on

    return serve.main()


if __name__ == "__main__":
    sys.exit(main())
