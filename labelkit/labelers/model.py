"""The lifecycle every local model follows, and the one way an ONNX session is made.

Why a base class (as Immich's ``immich_ml/models/base.py``): the local labeller runs
several models (classifier, detector, faces), and each must be cheap to construct
(settings are read at import time of the worker, the dashboard builds labellers on
every rerun), load its weights exactly once even when two worker threads ask at the
same moment, and say clearly what to run when its files are missing. So every model:

1. **locates** its files (:meth:`LocalModel.files`) and reports what is missing
   (:meth:`LocalModel.missing`) without loading anything;
2. **loads** once, under a lock (:meth:`LocalModel.load` -> ``_load``);
3. **predicts** in three separate steps, ``preprocess`` (arrays in the model's input
   layout), ``infer`` (the engine call, nothing else) and ``postprocess`` (raw outputs
   to typed results), so each step can be tested and timed on its own.

``prepare`` (decoded RGB image -> the model's input array) is separate from
``preprocess`` because the labeller runs it on its decode thread pool, per image,
while ``preprocess``/``infer`` run once per batch.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from labelkit.errors import LabelerError

if TYPE_CHECKING:
    import onnxruntime
    from PIL import Image

logger = logging.getLogger(__name__)

PreparedT = TypeVar("PreparedT")
OutputT = TypeVar("OutputT")


def ort_session(path: Path, threads: int, *, fixed_shapes: bool = True) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session with the options every local model uses.

    ``fixed_shapes=False`` for a model whose inputs change shape from call to call (the text
    model's: each photo's aspect, each line's length; the moderation model's batch size):
    onnxruntime's memory arena and memory patterns keep the largest shape's buffers for good.
    Measured on the package photos (a page of text and a 12 MP photo among them, batches of 1
    and 8): peak RSS 1,150 MB with them, 950 MB without, the same CPU time."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle pool threads sleep instead of spinning: on this (shared, 2-core) kind of
    # machine spinning threads compete with the other workers, and with each other:
    # measured under load, fp32 21 ms/image without spinning vs 29-40 ms with it.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = fixed_shapes
    options.enable_mem_pattern = fixed_shapes
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class LocalModel(ABC, Generic[PreparedT, OutputT]):
    """One local model: locate -> load once -> predict (preprocess, infer, postprocess)."""

    #: Short name, as in ``LABELKIT_LOCAL_MODELS`` ("classifier", "detector", "faces").
    name: str = ""

    def __init__(self, *, threads: int = 2) -> None:
        self.threads = max(1, int(threads))
        self._lock = threading.Lock()
        self._loaded = False

    # --- 1. locate ------------------------------------------------------------------

    @abstractmethod
    def files(self) -> list[Path]:
        """Every file the model needs (none for a model compiled into its package)."""

    def missing(self) -> list[Path]:
        return [p for p in self.files() if not p.is_file()]

    def how_to_fix(self) -> str:
        """What to run when files are missing (shown in the error)."""
        return "Run `make model` (or `python -m labelkit.labelers.build`)."

    # --- 2. load once ---------------------------------------------------------------

    def load(self) -> None:
        """Load the weights once per instance; safe to call from several threads."""
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            missing = self.missing()
            if missing:
                raise LabelerError(
                    f"The local {self.name} model is not ready ({', '.join(map(str, missing))} "
                    f"missing). {self.how_to_fix()}",
                    permanent=False,
                )
            try:
                self._load()
            except LabelerError:
                raise
            except Exception as exc:  # a broken file: say what to do, keep the cause
                raise LabelerError(
                    f"Cannot load the local {self.name} model: {exc}. {self.how_to_fix()}",
                    permanent=False,
                ) from exc
            logger.info("loaded the %s model (%d threads)", self.name, self.threads)
            self._loaded = True

    @abstractmethod
    def _load(self) -> None:
        """Create sessions / read weights (called once, under the lock)."""

    # --- 3. predict -----------------------------------------------------------------

    @abstractmethod
    def prepare(self, rgb: Image.Image) -> PreparedT:
        """One decoded RGB image -> this model's input for it (runs on the decode pool)."""

    @abstractmethod
    def preprocess(self, prepared: Sequence[PreparedT]) -> Any:
        """A batch of prepared inputs -> the engine's input."""

    @abstractmethod
    def infer(self, batch: Any) -> Any:
        """The engine call and nothing else."""

    @abstractmethod
    def postprocess(self, raw: Any, prepared: Sequence[PreparedT]) -> list[OutputT]:
        """Raw engine outputs -> one typed result per image."""

    def predict(self, prepared: Sequence[PreparedT]) -> list[OutputT]:
        if not prepared:
            return []
        self.load()
        try:
            raw = self.infer(self.preprocess(prepared))
        except LabelerError:
            raise
        except Exception as exc:  # engines raise their own exception types
            raise LabelerError(f"local {self.name} model failed: {exc}") from exc
        return self.postprocess(raw, prepared)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    out: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return out
