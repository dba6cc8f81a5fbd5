"""Two worker threads making the first face detection (and first face description) of a new
process at the same moment both finish.

yuface's first call initialises pybind11's numpy bridge (a C++ function-local static that
imports numpy while holding the GIL); two threads making that first call at once deadlocked
(seen beside two CPU hogs: both photos stuck in "labelling", py-spy showing one thread in
``__cxa_guard_acquire``). The models now make that first call while loading, under their load
lock. The race is only possible in a fresh process, so each try is a new interpreter; a try
that hangs is killed at its deadline and fails the test.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]
TRIES = 4
DEADLINE_S = 120  # a try takes a few seconds; a deadlock never ends

SCRIPT = textwrap.dedent(
    """
    import threading
    import numpy as np
    from PIL import Image
    from labelkit.labelers.faces import FaceDetector
    from labelkit.labelers.face_id import FaceEncoder

    faces, encoder = FaceDetector(1), FaceEncoder()
    image = Image.fromarray(np.full((240, 320, 3), 128, dtype=np.uint8))
    start = threading.Barrier(2)
    done = []

    def work():
        start.wait()
        faces.predict([faces.prepare(image)])
        crops = encoder.with_rects(encoder.prepare(image), [(100, 60, 200, 180)])
        done.append(encoder.predict([crops])[0].shape)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert done == [(1, 128), (1, 128)], done
    print("ok")
    """
)


def test_two_threads_first_face_calls_finish() -> None:
    for attempt in range(TRIES):
        try:
            out = subprocess.run(
                [sys.executable, "-c", SCRIPT],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=DEADLINE_S,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"try {attempt + 1}: two threads' first face calls deadlocked")
        assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
