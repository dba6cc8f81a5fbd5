"""Memory and time of a burst of simultaneous sign-ins: ``python -m bench.sign_in_burst``.

20 people (different accounts and addresses, so the throttle never refuses) sign in at the same
moment against a fresh SQLite database, with the production argon2 parameters (argon2-cffi's
defaults: 64 MiB, 3 passes, 4 lanes). Each configuration runs in a process of its own; the
figure is that process's peak RSS during the burst minus its RSS just before it
(``resource.getrusage`` high-water mark), and the burst's wall time.

``--parallel 20`` is how the code behaved before issue #15 (every request hashed at once);
``--parallel 2`` is the default (``LABELKIT_LOGIN_PARALLEL_HASHES``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from labelkit.auth import SignInClient
from labelkit.auth.local import LocalAuth
from labelkit.db.engine import make_engine
from labelkit.db.migrate import upgrade

PASSWORD = "vivid-lantern-orbit-93"


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def run_one(parallel: int, people: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        upgrade(engine)
        auth = LocalAuth(engine, parallel_hashes=parallel)
        names = [f"user{i:02d}" for i in range(people)]
        for name in names:
            auth.sign_up(name, PASSWORD)
        before = _rss_mb()
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        barrier = threading.Barrier(people)

        def sign_in(i: int) -> None:
            barrier.wait()
            auth.sign_in(names[i], PASSWORD, client=SignInClient(address=f"198.51.100.{i}"))

        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=people) as pool:
            list(pool.map(sign_in, range(people)))
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        engine.dispose()
    # The high-water mark may predate the burst (sign-ups hash one at a time): take the larger base.
    return {
        "parallel": parallel,
        "added_mb": round(peak - max(before, peak_before), 1),
        "seconds": round(seconds, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sign_in_burst", description=__doc__)
    p.add_argument("--people", type=int, default=20)
    p.add_argument("--parallel", type=int, default=None, help="run one configuration (internal)")
    args = p.parse_args(argv)
    if args.parallel is not None:
        print(json.dumps(run_one(args.parallel, args.people)))
        return 0
    for parallel in (args.people, 2):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.sign_in_burst",
                "--people",
                str(args.people),
                "--parallel",
                str(parallel),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{args.people} simultaneous sign-ins, {parallel} hashes at once: "
            f"+{r['added_mb']} MB peak RSS, {r['seconds']} s for the burst"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
