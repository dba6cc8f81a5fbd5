"""Benchmark the local labeller in each mode: ``python -m bench.labeler [--doc docs/benchmarks.md]``.

What is measured, and why this way:

* Photos that ship in installed packages (scikit-learn's ``china.jpg``/``flower.jpg``,
  scikit-image's chelsea, coffee, astronaut, rocket; ~0.2-0.4 MP JPEGs) and 12 MP
  JPEGs made from them (upscaled to 4000x3000, quality 90), so it runs offline.
* Each mode (``MODES``: which local models run, and their precision) is the full
  :meth:`LocalLabeler.label` / ``label_batch`` path, bytes in, Rekognition-shaped result
  out: decode (draft), resizes, properties, every enabled model, scenes, fusion, boxes.
  ``full`` is the default configuration (text and moderation included);
  ``classifier+detector+faces`` is the same without them, so the two rows show what they cost.
* Per stage: the milliseconds each model took per photo (:meth:`LocalLabeler.timings`), median
  over the batch-1 calls on the small photos (text recognition: over the calls that ran it).
* Each mode runs in its own subprocess so peak RSS (``ru_maxrss``) is per mode. Modes
  take turns over ``--rounds`` rounds (median per cell), and CPU ms/image is reported
  too: it barely moves when other work loads the machine, images/s does.
* No engine's threads spin while idle (onnxruntime: ``allow_spinning=0``; OpenMP in the
  face detector: ``OMP_WAIT_POLICY=PASSIVE`` and one thread).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.docs_page import add_doc_option, update_doc
from labelkit.labelers.base import ImageInput, LabelOptions
from labelkit.labelers.catalog import Precision

#: Issue 14's targets for the full labeller (decode, classifier, detector, faces, properties).
TARGETS = {"small_ips": 15.0, "large_ips": 10.0, "rss_mb": 800.0}
#: mode -> (LABELKIT_LOCAL_MODELS, precision)
FULL = ("classifier", "detector", "faces", "text", "moderation")
MODES: dict[str, tuple[tuple[str, ...], Precision]] = {
    "classifier": (("classifier",), "int8"),
    "classifier+detector": (("classifier", "detector"), "int8"),
    "classifier+detector+faces": (("classifier", "detector", "faces"), "int8"),
    "full": (FULL, "int8"),
    "full-fp32": (FULL, "fp32"),
}
ENGINES = tuple(MODES)


def photos() -> dict[str, list[bytes]]:
    """JPEG bytes: 'small' (the package photos) and 'large' (12 MP versions of two of them)."""
    import skimage.data
    import sklearn.datasets
    from PIL import Image

    def encode(arr: Any, quality: int = 90) -> bytes:
        out = io.BytesIO()
        Image.fromarray(arr).convert("RGB").save(out, format="JPEG", quality=quality)
        return out.getvalue()

    sk_dir = Path(sklearn.datasets.__file__).parent / "images"
    small = [(sk_dir / name).read_bytes() for name in ("china.jpg", "flower.jpg")]
    small += [encode(getattr(skimage.data, name)()) for name in ("chelsea", "coffee", "astronaut", "rocket")]
    large = []
    for data in small[:1] + small[2:3]:  # china and chelsea
        img = Image.open(io.BytesIO(data)).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
        large.append(encode(np.asarray(img), 90))
    return {"small": small, "large": large}


def make_labeler(engine: str, model: str, model_dir: Path, threads: int) -> Any:
    from labelkit.labelers.local import LocalLabeler

    models, precision = MODES[engine]
    return LocalLabeler(model=model, model_dir=model_dir, threads=threads, precision=precision, models=models)


def save_photos(folder: Path) -> None:
    """Write the photos as files, so the measuring processes need not import skimage/sklearn
    (whose memory would otherwise count in the labeller's peak RSS)."""
    for kind, images in photos().items():
        for i, data in enumerate(images):
            (folder / f"{kind}-{i}.jpg").write_bytes(data)


def load_photos(folder: Path) -> dict[str, list[bytes]]:
    return {
        kind: [p.read_bytes() for p in sorted(folder.glob(f"{kind}-*.jpg"))] for kind in ("small", "large")
    }


def run_engine(
    engine: str, model: str, model_dir: Path, threads: int, seconds: float, folder: Path
) -> dict[str, Any]:
    """Measure one engine in this process; returns numbers as a dict."""
    data = load_photos(folder)
    labeler = make_labeler(engine, model, model_dir, threads)
    options = LabelOptions()
    labeler.label(ImageInput(data["small"][0]), options)  # load and warm up
    out: dict[str, Any] = {"engine": engine}
    for kind, images in data.items():
        inputs = [ImageInput(d) for d in images]
        budget = seconds / 2
        # batch 1: one call per image, latency per call
        lat: list[float] = []
        stages: dict[str, list[float]] = {}
        cpu = time.process_time()
        started = time.perf_counter()
        while time.perf_counter() - started < budget or len(lat) < 2 * len(inputs):
            for img in inputs:
                t = time.perf_counter()
                labeler.label(img, options)
                lat.append(time.perf_counter() - t)
                for stage, ms in labeler.timings().items():
                    stages.setdefault(stage, []).append(ms)
        total = sum(lat)
        out[f"{kind}_stages_ms"] = {stage: statistics.median(v) for stage, v in stages.items()}
        out[f"{kind}_b1"] = {
            "images": len(lat),
            "ips": len(lat) / total,
            "cpu_ms": 1000 * (time.process_time() - cpu) / len(lat),
            "p50_ms": 1000 * statistics.median(lat),
            "p95_ms": 1000 * float(np.percentile(lat, 95)),
        }
        # batch 8: label_batch over 8 images (cycling the set), latency per batch
        batch = [inputs[i % len(inputs)] for i in range(8)]
        blat: list[float] = []
        cpu = time.process_time()
        started = time.perf_counter()
        while time.perf_counter() - started < budget or len(blat) < 3:
            t = time.perf_counter()
            labeler.label_batch(batch, options)
            blat.append(time.perf_counter() - t)
        out[f"{kind}_b8"] = {
            "images": 8 * len(blat),
            "ips": 8 * len(blat) / sum(blat),
            "cpu_ms": 1000 * (time.process_time() - cpu) / (8 * len(blat)),
            "p50_ms": 1000 * statistics.median(blat),
            "p95_ms": 1000 * float(np.percentile(blat, 95)),
        }
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out["mp"] = {kind: statistics.mean(_megapixels(d) for d in images) for kind, images in data.items()}
    return out


def child_env(engine: str) -> dict[str, str]:
    """The environment of one measuring process: OpenMP threads (the face detector's)
    wait passively, as onnxruntime's do."""
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from several rounds of an engine: per cell the round with the median
    images/s (its latencies with it); peak RSS is the largest of any round."""
    out = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, dict) and "ips" in value:
            ranked = sorted((r[key] for r in runs), key=lambda row: row["ips"])
            out[key] = ranked[len(ranked) // 2]
    out["rss_mb"] = max(r["rss_mb"] for r in runs)
    return out


def _megapixels(data: bytes) -> float:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return img.width * img.height / 1e6


def table(results: list[dict[str, Any]], model: str, threads: int) -> str:
    mp = results[0]["mp"]
    names = {
        "small": f"package photos (~{mp['small']:.2f} MP)",
        "large": f"12 MP JPEGs ({mp['large']:.0f} MP)",
    }
    lines = [
        f"Local labeller by mode (`LABELKIT_LOCAL_MODELS`; EfficientNet-{model.title()}, SSD MobileNet v2, "
        f"YuNet, PP-OCRv6 small, open_nsfw), {threads} threads, {os.cpu_count()} CPU cores; full path "
        "(JPEG bytes in, labels + boxes + properties + text + moderation out). classifier = the "
        "classifier alone (int8); full = classifier + detector + faces + scenes + fusion + text + "
        "moderation, the default (int8 models where there are any; full-fp32: float models); "
        "classifier+detector+faces = full without text and moderation.",
        "",
        "| engine | images | batch | images/s | p50 ms/call | p95 ms/call | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in ("small", "large"):
        for b in ("b1", "b8"):
            for res in results:
                row = res[f"{kind}_{b}"]
                lines.append(
                    f"| {res['engine']} | {names[kind]} | {b[1:]} | {row['ips']:.1f} | "
                    f"{row['p50_ms']:.1f} | {row['p95_ms']:.1f} | {res['rss_mb']:.0f} |"
                )
    # CPU time (all threads of the process) per image barely moves when other work
    # loads the machine, unlike images/s: the like-for-like engine comparison.
    lines += [
        "",
        "| engine | CPU ms/image: small b1 | small b8 | 12 MP b1 | 12 MP b8 |",
        "|---|---|---|---|---|",
    ]
    for res in results:
        cells = " | ".join(
            f"{res[k]['cpu_ms']:.1f}" if "cpu_ms" in res[k] else "-"
            for k in ("small_b1", "small_b8", "large_b1", "large_b8")
        )
        lines.append(f"| {res['engine']} | {cells} |")

    stage_names = sorted({s for res in results for s in res.get("small_stages_ms", {})})
    if stage_names:
        lines += [
            "",
            "Milliseconds per photo per stage (package photos, batch 1, median over the calls; "
            "text_detect and text_recognise are parts of text, the second only where lines were found):",
            "",
            "| engine | " + " | ".join(stage_names) + " |",
            "|---|" + "---|" * len(stage_names),
        ]
        for res in results:
            cells = res.get("small_stages_ms", {})
            lines.append(
                f"| {res['engine']} | "
                + " | ".join(f"{cells[s]:.1f}" if s in cells else "-" for s in stage_names)
                + " |"
            )

    def mark(ok: bool) -> str:
        return "met" if ok else "NOT met"

    full = [r for r in results if r["engine"].startswith("full")]
    if full:
        lines += ["", "| target (full labeller) | measured | |", "|---|---|---|"]
    for res in full:
        best_small = max(res["small_b1"]["ips"], res["small_b8"]["ips"])
        best_large = max(res["large_b1"]["ips"], res["large_b8"]["ips"])
        lines += [
            f"| {res['engine']}: >= {TARGETS['small_ips']:.0f} images/s, ~0.2 MP photos | {best_small:.1f} | "
            f"{mark(best_small >= TARGETS['small_ips'])} |",
            f"| {res['engine']}: >= {TARGETS['large_ips']:.0f} images/s, 12 MP JPEGs | {best_large:.1f} | "
            f"{mark(best_large >= TARGETS['large_ips'])} |",
            f"| {res['engine']}: peak RSS < {TARGETS['rss_mb']:.0f} MB | {res['rss_mb']:.0f} MB | "
            f"{mark(res['rss_mb'] < TARGETS['rss_mb'])} |",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from labelkit.settings import get_settings

    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_doc_option(parser, "labeler")
    parser.add_argument("--model", choices=["lite0", "lite2"], default=settings.local_model)
    parser.add_argument("--threads", type=int, default=settings.model_threads)
    parser.add_argument("--seconds", type=float, default=8.0, help="time per engine and image size")
    parser.add_argument(
        "--engines", default=",".join(ENGINES), help=f"comma-separated subset of {','.join(ENGINES)}"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per engine (median)")
    parser.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--photos", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    model_dir = settings.resolved_model_dir

    if args.engine:  # child process: measure one engine, print JSON
        result = run_engine(args.engine, args.model, model_dir, args.threads, args.seconds, args.photos)
        print(json.dumps(result))
        return 0

    engines = [e for e in args.engines.split(",") if e]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        parser.error(f"unknown engines: {unknown}")
    rounds = max(1, args.rounds)
    runs: dict[str, list[dict[str, Any]]] = {engine: [] for engine in engines}
    with tempfile.TemporaryDirectory(prefix="bench-labeler-") as tmp:
        save_photos(Path(tmp))
        # Engines take turns, round after round, so a burst of load from other work on
        # the machine hits all of them alike; each cell is then the median round.
        for r in range(rounds):
            for engine in engines:
                cmd = [sys.executable, "-m", "bench.labeler", "--engine", engine, "--model", args.model]
                cmd += ["--threads", str(args.threads), "--seconds", str(args.seconds / rounds)]
                cmd += ["--photos", tmp]
                print(f"measuring {engine} (round {r + 1}/{rounds}) ...", file=sys.stderr)
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=child_env(engine))
                if proc.returncode != 0:
                    print(proc.stderr, file=sys.stderr)
                    return 1
                runs[engine].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    results = [median_run(runs[engine]) for engine in engines]
    text = table(results, args.model, args.threads)
    if rounds > 1:
        text += f"\n\nEach row: the median of {rounds} interleaved rounds (engines alternate)."
    print(text)
    if args.doc:
        update_doc(args.doc, text, name="labeler", title="Local labeller")
        print(f"updated {args.doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
