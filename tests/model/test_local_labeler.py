"""The classifier-only local labeller (``LABELKIT_LOCAL_MODELS=classifier``) on real photos
that ship in packages (real model, no network): the EfficientNet-Lite part on its own.
The full labeller (detector, faces, fusion) is tested in ``test_full_labeler.py``.

Needs the exported model (``make model``; ``make test`` runs it first). The fixture
exports into the configured model directory if it is missing, so the file also runs
on its own.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import sklearn.datasets
from PIL import Image

from labelkit.domain import LabelResult
from labelkit.errors import IntakeError, LabelerError
from labelkit.labelers.base import ImageInput, LabelOptions
from labelkit.labelers.build import ensure_exported
from labelkit.labelers.catalog import MODELS
from labelkit.labelers.classify import cam_box
from labelkit.labelers.local import LocalLabeler
from labelkit.settings import Settings

pytestmark = pytest.mark.model

SK_IMAGES = Path(sklearn.datasets.__file__).parent / "images"
# The repository's default model cache (make model writes it). Anchored here because the
# shared conftest moves every test into its own temporary working directory.
MODEL_DIR = Path(__file__).resolve().parents[2] / Settings().resolved_model_dir


def _jpeg(arr: np.ndarray, quality: int = 92) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr).convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


@pytest.fixture(scope="module")
def model_dir() -> Path:
    ensure_exported(["lite2"], MODEL_DIR, precisions=("fp32", "int8"))
    return MODEL_DIR


@pytest.fixture(scope="module", params=["fp32", "int8"])
def labeler(model_dir: Path, request: pytest.FixtureRequest) -> LocalLabeler:
    return LocalLabeler(
        model="lite2", model_dir=model_dir, threads=2, precision=request.param, models=("classifier",)
    )


@pytest.fixture(scope="module")
def both(model_dir: Path) -> dict[str, LocalLabeler]:
    return {
        p: LocalLabeler(model="lite2", model_dir=model_dir, threads=2, precision=p, models=("classifier",))
        for p in ("fp32", "int8")
    }


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    return {
        "chelsea": _jpeg(skimage.data.chelsea()),
        "coffee": _jpeg(skimage.data.coffee()),
        "astronaut": _jpeg(skimage.data.astronaut()),
        "china": (SK_IMAGES / "china.jpg").read_bytes(),
    }


@pytest.fixture(scope="module")
def results(labeler: LocalLabeler, photos: dict[str, bytes]) -> dict[str, LabelResult]:
    options = LabelOptions(min_confidence=0, max_labels=1000)
    images = [ImageInput(data) for data in photos.values()]
    return dict(zip(photos, labeler.label_batch(images, options), strict=True))


def _names(result: LabelResult, min_confidence: float = 55.0) -> set[str]:
    return {lab.name for lab in result.labels if lab.confidence >= min_confidence}


def test_cat_photo_is_a_cat_with_animal_parents(results: dict[str, LabelResult]) -> None:
    # GIVEN scikit-image's chelsea (a tabby cat) WHEN labelled THEN "Cat" leads, under Animal
    labels = {lab.name: lab for lab in results["chelsea"].labels}
    cat = labels["Cat"]
    assert cat.confidence > 80
    assert cat.parents[0] == "Pet" and "Animal" in cat.parents and "Mammal" in cat.parents
    assert "Animals and Pets" in cat.categories
    assert results["chelsea"].labels[0].name in {"Cat", "Animal", "Mammal"}
    assert labels["Animal"].confidence >= 55
    # a box around the cat, inside the image
    assert len(cat.instances) == 1


def test_coffee_photo_is_a_beverage(results: dict[str, LabelResult]) -> None:
    names = _names(results["coffee"])
    assert {"Coffee", "Beverage", "Coffee Cup"} <= names
    assert not names & {"Animal", "Building"}


def test_china_is_a_building_and_not_an_animal(results: dict[str, LabelResult]) -> None:
    result = results["china"]
    names = _names(result)
    assert "Building" in names
    assert "Buildings and Architecture" in {c for lab in result.labels for c in lab.categories}
    assert not names & {"Animal", "Mammal", "Bird", "Pet"}
    # the animal mass is there but stays under its own threshold
    animal = next(lab for lab in result.labels if lab.name == "Animal")
    assert animal.confidence < 55


def test_astronaut_gets_no_confident_wrong_label(results: dict[str, LabelResult]) -> None:
    # ImageNet has no "astronaut" or generic "person" class for this portrait: the model
    # spreads its mass (ski, bobsled, football helmet...). At the default threshold
    # nothing is claimed; below it the best guesses are gear/clothing-like, never animals.
    result = results["astronaut"]
    assert not _names(result, 55) & {"Animal", "Mammal", "Building", "Food"}
    assert result.labels  # with min_confidence=0 there are candidates
    top = result.labels[0]
    assert top.confidence < 55


def test_boxes_inside_the_image(results: dict[str, LabelResult]) -> None:
    boxes = [inst.box for r in results.values() for lab in r.labels for inst in lab.instances]
    assert boxes
    for box in boxes:
        assert 0 <= box.left <= 1 and 0 <= box.top <= 1
        assert box.width > 0 and box.height > 0
        assert box.left + box.width <= 1 + 1e-6 and box.top + box.height <= 1 + 1e-6
    cat = next(lab for lab in results["chelsea"].labels if lab.name == "Cat")
    box = cat.instances[0].box
    # the cat fills the middle of the photo: the box covers the centre
    assert box.left < 0.5 < box.left + box.width and box.top < 0.5 < box.top + box.height


def test_largest_component_matches_a_flood_fill() -> None:
    from collections import deque

    from labelkit.labelers.classify import _largest_component

    def reference(mask: np.ndarray) -> tuple[int, int, int, int]:
        seen = np.zeros_like(mask)
        best: tuple[int, tuple[int, int, int, int]] | None = None
        for y, x in zip(*np.nonzero(mask), strict=True):  # row-major: ties keep the first
            if seen[y, x]:
                continue
            cells = []
            queue = deque([(y, x)])
            seen[y, x] = True
            while queue:
                cy, cx = queue.popleft()
                cells.append((cy, cx))
                for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                    inside = 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1]
                    if inside and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
            ys, xs = zip(*cells, strict=True)
            if best is None or len(cells) > best[0]:
                best = (len(cells), (min(ys), min(xs), max(ys), max(xs)))
        assert best is not None
        return best[1]

    rng = np.random.default_rng(7)
    for _ in range(300):
        mask = rng.random(tuple(rng.integers(1, 30, 2))) < rng.uniform(0.1, 0.8)
        if mask.any():
            assert _largest_component(mask) == reference(mask)


def test_bad_image_in_a_batch_is_an_intake_error(labeler: LocalLabeler, photos: dict[str, bytes]) -> None:
    # decoded on the thread pool: the error still comes out of label_batch
    with pytest.raises(IntakeError):
        labeler.label_batch([ImageInput(photos["chelsea"]), ImageInput(b"not an image")], LabelOptions())


def test_cam_box_finds_the_hot_region() -> None:
    cam = np.zeros((9, 9), dtype=np.float32)
    cam[6:9, 0:3] = 1.0  # bottom-left
    cam[0, 8] = 0.5  # a smaller, separate bump
    box = cam_box(cam)
    assert box is not None
    assert box.left < 0.1 and box.top > 0.55 and box.left + box.width < 0.45
    assert cam_box(np.zeros((9, 9))) is None


def test_properties_in_range(results: dict[str, LabelResult]) -> None:
    for result in results.values():
        props = result.image_properties
        assert props is not None
        for value in (props.brightness, props.sharpness, props.contrast):
            assert 0 <= value <= 100
        assert 1 <= len(props.dominant_colors) <= 5
        assert sum(c.pixel_percent for c in props.dominant_colors) <= 100.01
        for c in props.dominant_colors:
            assert c.hex_code == f"#{c.red:02x}{c.green:02x}{c.blue:02x}"
    # a flat black image: dark, flat, not sharp
    black = results_for(np.zeros((300, 400, 3), np.uint8))
    assert black.brightness < 1 and black.contrast < 1 and black.sharpness < 1
    assert black.dominant_colors[0].simplified_color == "black"


def results_for(arr: np.ndarray):  # type: ignore[no-untyped-def]
    from labelkit.labelers.properties import image_properties

    return image_properties(arr)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(os.urandom(4096), id="random-bytes"),
        pytest.param(b"", id="empty"),
        pytest.param(_jpeg(skimage.data.chelsea())[:3000], id="truncated-jpeg"),
    ],
)
def test_bad_input_is_an_intake_error(labeler: LocalLabeler, data: bytes) -> None:
    with pytest.raises(IntakeError):
        labeler.label(ImageInput(data), LabelOptions())


def test_options_are_respected(labeler: LocalLabeler, photos: dict[str, bytes]) -> None:
    image = ImageInput(photos["chelsea"])
    everything = labeler.label(image, LabelOptions(min_confidence=0, max_labels=1000)).labels
    assert len(everything) > 4
    assert [lab.confidence for lab in everything] == sorted(
        (lab.confidence for lab in everything), reverse=True
    )

    strict = labeler.label(image, LabelOptions(min_confidence=86)).labels
    assert strict and all(lab.confidence >= 86 for lab in strict)

    assert len(labeler.label(image, LabelOptions(min_confidence=0, max_labels=2)).labels) == 2

    only = labeler.label(image, LabelOptions(include_labels=("cat",))).labels
    assert [lab.name for lab in only] == ["Cat"]

    without = labeler.label(image, LabelOptions(exclude_labels=("Cat", "Pet"))).labels
    assert without and not {lab.name for lab in without} & {"Cat", "Pet"}

    no_animals = labeler.label(image, LabelOptions(exclude_categories=("Animals and Pets",))).labels
    assert all("Animals and Pets" not in lab.categories for lab in no_animals)


def test_batch_equals_single(labeler: LocalLabeler, photos: dict[str, bytes]) -> None:
    options = LabelOptions(min_confidence=20)
    single = labeler.label(ImageInput(photos["coffee"]), options)
    batch = labeler.label_batch([ImageInput(photos["chelsea"]), ImageInput(photos["coffee"])], options)
    assert [lab.name for lab in batch[1].labels] == [lab.name for lab in single.labels]
    for a, b in zip(batch[1].labels, single.labels, strict=True):
        assert a.confidence == pytest.approx(b.confidence, abs=0.01)


def test_large_jpeg_decoded_at_reduced_scale(labeler: LocalLabeler) -> None:
    # A 12 MP JPEG gives the same top label as the small photo (decoded via draft).
    big = Image.fromarray(skimage.data.chelsea()).resize((4000, 3000), Image.Resampling.BILINEAR)
    data = _jpeg(np.asarray(big), quality=85)
    prepared = labeler.prepare(ImageInput(data))
    assert prepared.pixels.shape == (260, 260, 3)
    result = labeler.label(ImageInput(data), LabelOptions())
    assert "Cat" in {lab.name for lab in result.labels}


def test_model_version_and_settings(model_dir: Path) -> None:
    # Settings choose the model and the precision (int8 by default).
    default = LocalLabeler.from_settings(
        Settings(model_dir=model_dir, local_model="lite2", local_models="classifier")
    )
    assert default.model_version.startswith("efficientnet-lite2-int8-onnx-1.")
    labeler = LocalLabeler.from_settings(
        Settings(model_dir=model_dir, local_model="lite2", local_precision="fp32", local_models="classifier")
    )
    assert labeler.model_version.startswith("efficientnet-lite2-onnx-1-rules2.")
    assert MODELS["lite0"].size == 224
    assert default.model_version != labeler.model_version
    with pytest.raises(LabelerError, match="precision"):
        LocalLabeler(precision="fp16")  # type: ignore[arg-type]


def _package_photos() -> dict[str, bytes]:
    skimage_dir = Path(skimage.data.__file__).parent
    return {
        "chelsea": _jpeg(skimage.data.chelsea()),
        "coffee": _jpeg(skimage.data.coffee()),
        "astronaut": _jpeg(skimage.data.astronaut()),
        "rocket": _jpeg(skimage.data.rocket()),
        "motorcycle": _jpeg(np.asarray(Image.open(skimage_dir / "motorcycle_left.png").convert("RGB"))),
        "china": (SK_IMAGES / "china.jpg").read_bytes(),
    }


def test_int8_labels_match_fp32(both: dict[str, LocalLabeler]) -> None:
    # GIVEN the package photos WHEN labelled by fp32 and int8 THEN the same labels lead,
    # and every rolled-up confidence stays within a few points (measured max 3.4)
    options = LabelOptions(min_confidence=0, max_labels=1000)
    for name, data in _package_photos().items():
        fp32, int8 = (both[p].label(ImageInput(data), options).labels for p in ("fp32", "int8"))
        f = {lab.name: lab.confidence for lab in fp32}
        q = {lab.name: lab.confidence for lab in int8}
        assert max(abs(f.get(k, 0) - q.get(k, 0)) for k in f.keys() | q.keys()) < 6, name
        top_f = [lab.name for lab in fp32 if lab.confidence >= 55]
        top_q = [lab.name for lab in int8 if lab.confidence >= 55]
        if name == "china":  # "Palace" sits at the threshold: int8 tips it over
            assert top_q[:2] == top_f[:2] == ["Building", "Architecture"]
        else:
            assert top_q == top_f, name


def test_int8_export_is_deterministic(model_dir: Path, tmp_path: Path) -> None:
    # Quantizing again (same photos, same seeds) gives the cached file byte for byte.
    from labelkit.labelers.catalog import ModelFiles, sha256_file
    from labelkit.labelers.quantize import quantize_int8

    files = ModelFiles.of(model_dir, MODELS["lite2"])
    out = tmp_path / "again.int8.onnx"
    quantize_int8(files.onnx, out, MODELS["lite2"].size)
    assert sha256_file(out) == sha256_file(files.int8)


def test_int8_export_is_cached(model_dir: Path) -> None:
    import time

    from labelkit.labelers.build import is_current

    started = time.perf_counter()
    assert is_current(model_dir, MODELS["lite2"], "int8")
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_missing_model_is_a_clear_error(tmp_path: Path, precision: str) -> None:
    labeler = LocalLabeler(
        model="lite2",
        model_dir=tmp_path,
        precision=precision,
        models=("classifier",),  # type: ignore[arg-type]
    )
    with pytest.raises(LabelerError, match="make model"):
        labeler.label(ImageInput(_jpeg(skimage.data.coffee())), LabelOptions())


def test_runtime_does_not_import_torch(full_model_dir: Path) -> None:
    # The full labeller (classifier, detector, faces) needs none of the export-time stacks.
    import subprocess
    import sys

    code = (
        "import sys, skimage.data, io\n"
        "from PIL import Image\n"
        "from labelkit.labelers.local import LocalLabeler\n"
        "from labelkit.labelers.base import ImageInput, LabelOptions\n"
        "b = io.BytesIO(); Image.fromarray(skimage.data.coffee()).save(b, 'JPEG')\n"
        f"lab = LocalLabeler(model_dir={str(full_model_dir)!r})\n"
        "r = lab.label(ImageInput(b.getvalue()), LabelOptions())\n"
        "assert r.labels\n"
        "assert 'torch' not in sys.modules, 'torch imported at run time'\n"
        "assert 'nltk' not in sys.modules\n"
        # (cv2 is a run-time dependency since the text reader: rapidocr's box post-processing)
        "assert 'tensorflow' not in sys.modules and 'tf2onnx' not in sys.modules\n"
    )
    subprocess.run(
        [sys.executable, "-c", code], check=True, timeout=300, cwd=Path(__file__).resolve().parents[2]
    )


def test_onnx_matches_torch(model_dir: Path) -> None:
    # Export reproducibility: the cached ONNX gives torch's logits within 1e-4 on a photo.
    import onnxruntime as ort
    import torch

    from labelkit.labelers.build import TOLERANCE, ModelFiles, load_torch_model, sample_input

    spec = MODELS["lite2"]
    x = sample_input(spec)
    session = ort.InferenceSession(
        str(ModelFiles.of(model_dir, spec).onnx), providers=["CPUExecutionProvider"]
    )
    got = session.run(["logits"], {"input": x})[0]
    with torch.no_grad():
        want = load_torch_model(spec)(torch.from_numpy(x)).numpy()
    assert float(np.abs(got - want).max()) < TOLERANCE
    assert int(got.argmax()) in range(281, 286)  # a domestic cat class on chelsea
