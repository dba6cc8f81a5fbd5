"""``python -m tests.reliability.lethal_listener``: ``python -m sqs_listener`` whose process is
SIGKILLed the moment it starts labelling an image whose sha256 is listed in
``LETHAL_SHA256`` (comma-separated) -- what the kernel's out-of-memory killer does
to a worker on an image it cannot afford. Everything else is the real listener."""

from __future__ import annotations

import hashlib
import os
import signal
import sys
from typing import Any

from labelkit.labelers.fake import FakeLabeler

_LETHAL = set(filter(None, os.environ.get("LETHAL_SHA256", "").split(",")))
_label = FakeLabeler.label


def _label_or_die(self: FakeLabeler, image: Any, options: Any) -> Any:
    if hashlib.sha256(image.data).hexdigest() in _LETHAL:
        os.kill(os.getpid(), signal.SIGKILL)
    return _label(self, image, options)


FakeLabeler.label = _label_or_die  # type: ignore[method-assign]

if __name__ == "__main__":
    from sqs_listener.__main__ import main

    sys.exit(main())
