"""Make glibc give large freed buffers back to the operating system at once.

glibc serves a request of at least ``M_MMAP_THRESHOLD`` bytes with its own ``mmap``, and
``free`` unmaps it: the memory goes back to the system. But the threshold is *dynamic*:
each time such a block is freed, the threshold rises to its size (up to 32 MB). After the
first 19 MB upload is freed, the next ones come from the ordinary heap, and a heap with
anything still allocated above them cannot shrink. Measured on the dashboard: 20 refused
19 MB uploads left it 125 MB larger for good (with Streamlit's own copy of each file
released, see ``dashboard.core.release_upload``); with a fixed threshold, 5 MB.

Setting the threshold explicitly (``mallopt``) switches the adjustment off. Blocks of
1 MB and more (uploads, image buffers) are then always mapped and unmapped; everything
smaller is unaffected. A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from functools import cache
from typing import Final

logger = logging.getLogger(__name__)

_M_MMAP_THRESHOLD: Final = -3  # from <malloc.h>
LARGE_BLOCK_BYTES: Final = 1024 * 1024


@cache
def return_large_blocks_to_the_os(threshold: int = LARGE_BLOCK_BYTES) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes for this process (once). True if set."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl, macOS): nothing to tune
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, threshold))
    if not ok:
        logger.warning("mallopt(M_MMAP_THRESHOLD, %d) was refused", threshold)
    return ok
