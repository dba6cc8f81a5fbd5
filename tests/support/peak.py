"""Peak memory of one intake call, measured in a fresh process (and its decoder children).

``measure(call, data, tmp, arguments)`` runs ``labelkit.images.<call>(data, **arguments)`` in
a new Python process and returns what it used: the caller's own growth (VmHWM minus its idle VmRSS) and the
decoder children's (``getrusage(RUSAGE_CHILDREN).ru_maxrss``, read after the sandbox has
stopped and reaped them, minus an idle child's VmRSS). A fresh process per measurement,
because a high-water mark never goes down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = r"""
import json, resource, sys, time
from pathlib import Path
from labelkit import images
from labelkit.errors import IntakeError
from labelkit.settings import get_settings

def status(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    raise KeyError(field)

call, path, kwargs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
data = Path(path).read_bytes()
small = Path(sys.argv[4]).read_bytes()
# Warm up: import everything the call needs and start the decoder child, so that
# what is measured is the image, not the first call's imports.
images.inspect_image(small, max_bytes=len(small), max_pixels=10_000)
child_idle = 0
settings = get_settings()
if getattr(settings, "decode_isolation", "none") == "process":  # (absent before the sandbox)
    from labelkit import sandbox

    pool = sandbox.get_sandbox(
        memory_bytes=settings.decode_memory_mb * 1024 * 1024, processes=settings.decode_processes
    )
    child_idle = max(status(pid, "VmRSS") for pid in pool.child_pids())
idle = status("self", "VmRSS")
started = time.monotonic()
try:
    result = getattr(images, call)(data, **kwargs)
    outcome = {"ok": True, "summary": repr(result)[:200]}
    if call == "make_thumbnail":
        outcome["thumbnail"] = result.hex()
except IntakeError as e:
    outcome = {"ok": False, "reason": e.reason}
seconds = time.monotonic() - started
peak = status("self", "VmHWM")
if "labelkit.sandbox" in sys.modules:
    sys.modules["labelkit.sandbox"].shutdown_all()
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
print(json.dumps({**outcome, "seconds": seconds, "idle_mb": idle, "peak_mb": peak,
                  "child_idle_mb": child_idle, "child_peak_mb": children}))
"""


@dataclass(frozen=True)
class Peak:
    ok: bool
    reason: str | None
    thumbnail: bytes | None
    idle_mb: int
    peak_mb: int
    child_idle_mb: int
    child_peak_mb: int

    @property
    def caller_growth_mb(self) -> int:
        return self.peak_mb - self.idle_mb

    @property
    def child_growth_mb(self) -> int:
        return max(0, self.child_peak_mb - self.child_idle_mb)

    @property
    def worst_growth_mb(self) -> int:
        """How far any one process grew above its idle size."""
        return max(self.caller_growth_mb, self.child_growth_mb)


def measure(
    call: str, data: bytes, tmp: Path, arguments: Mapping[str, object], *, env: dict[str, str] | None = None
) -> Peak:
    from PIL import Image

    path = tmp / "input.bin"
    path.write_bytes(data)
    warm = tmp / "warm.png"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(warm, format="PNG")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LABELKIT_")}
    full_env.update(PYTHONPATH=str(ROOT), **(env or {}))
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, call, str(path), json.dumps(dict(arguments)), str(warm)],
        capture_output=True,
        text=True,
        cwd=tmp,
        env=full_env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return Peak(
        ok=out["ok"],
        reason=out.get("reason"),
        thumbnail=bytes.fromhex(out["thumbnail"]) if out.get("thumbnail") else None,
        idle_mb=out["idle_mb"],
        peak_mb=out["peak_mb"],
        child_idle_mb=out["child_idle_mb"],
        child_peak_mb=out["child_peak_mb"],
    )
