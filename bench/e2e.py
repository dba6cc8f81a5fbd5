"""Upload to labels visible, end to end: ``python -m bench.e2e [--images 200] [--doc docs/benchmarks.md]``.

What is measured, and why this way:

* Local mode, as ``make run`` runs it: SQLite database and queue, a folder store, the real
  local model in real ``python -m sqs_listener`` processes (``labelkit/testing/workers.py``).
* Photos of mixed sizes, 0.2 to 12 MP (china.jpg with sensor-like noise from
  ``labelkit/testing/photos``, JPEG quality 85), made up front and made distinct per upload.
* **Latency** (one and two listeners): uploads are spaced, the next one starts only when the
  previous image is labelled, so no upload waits behind another. Latency is from just before
  ``upload_image`` (validate, store, insert, enqueue) to ``labelled_at``, which is written in
  the transaction that makes the labels visible.
* **Throughput** (one and two listeners): all uploads back to back; images / s from the first
  upload to the last label.
* **Where the time goes**: the per-stage milliseconds (claim, fetch, label, write) of the
  listener's JSON log lines, plus the wait in the queue (latency minus the pipeline's total).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.docs_page import add_doc_option, update_doc
from bench.soak import numbered
from labelkit.db.engine import transaction
from labelkit.db.models import Image, ImageStatus, utcnow
from labelkit.services import Services, build_services
from labelkit.testing.photos import encode, photo
from labelkit.testing.workers import (
    local_listener_env,
    local_settings,
    make_owner,
    start_listener,
    stop,
    unsettled,
)
from labelkit.uploads import upload_image

# 0.2, 0.7, 2.1, 6 and 12 MP
SIZES = ((548, 365), (1024, 683), (1800, 1200), (3000, 2000), (4000, 3000))
TARGET_P95_S = 1.5
STAGES = ("claim", "fetch", "label", "write", "total")


@dataclass
class Run:
    mode: str  # "spaced" or "burst"
    listeners: int
    images: int
    labelled: int = 0
    failed: int = 0
    latencies_s: list[float] = field(default_factory=list)
    by_mp: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    stages_ms: dict[str, list[float]] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        return self.labelled / self.seconds if self.seconds else 0.0


def _pct(values: list[float], q: int) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def photo_pool(seeds: int = 2) -> list[tuple[float, bytes]]:
    """(megapixels, JPEG) for every size in SIZES, ``seeds`` variants each."""
    return [
        (w * h / 1e6, encode(photo(w, h, noise=6, seed=seed), "JPEG", quality=85))
        for seed in range(seeds)
        for w, h in SIZES
    ]


def _labelled_at(services: Services, image_id: str) -> tuple[str, datetime | None]:
    with transaction(services.engine) as s:
        row = s.execute(select(Image.status, Image.labelled_at).where(Image.id == image_id)).one()
    return str(row[0]), row[1]


def _stages(log: Path, since: float) -> dict[str, list[float]]:
    """Per-stage ms from the listeners' JSON lines written after ``since`` (line offset)."""
    out: dict[str, list[float]] = {s: [] for s in STAGES}
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()[int(since) :]
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("event") == "image" and doc.get("status") == "labelled":
            for s in STAGES:
                if f"{s}_ms" in doc:
                    out[s].append(float(doc[f"{s}_ms"]))
    return out


def _line_count(log: Path) -> int:
    return len(log.read_text(encoding="utf-8", errors="replace").splitlines()) if log.exists() else 0


def run(
    *, mode: str, listeners: int, images: int, work_dir: Path, pool: list[tuple[float, bytes]], timeout: float
) -> Run:
    settings = local_settings(work_dir / "data", visibility=60, max_receives=4)
    services = build_services(settings)
    owner = make_owner(services, "bench")
    env = local_listener_env(settings)
    log = work_dir / "listeners.log"
    procs = [start_listener(env, work_dir, log, workers=1) for _ in range(listeners)]
    result = Run(mode=mode, listeners=listeners, images=images)
    started: dict[str, tuple[datetime, float]] = {}
    try:
        # Warm up (model load, first connections), not measured.
        warm = upload_image(services=services, owner_id=owner, filename="warm.jpg", data=pool[0][1])
        deadline = time.monotonic() + 120
        while unsettled(services) and time.monotonic() < deadline:
            time.sleep(0.05)
        offset = _line_count(log)
        t0 = time.monotonic()
        for i in range(images):
            mp, base = pool[i % len(pool)]
            t_up = utcnow()
            res = upload_image(
                services=services, owner_id=owner, filename=f"e2e-{i}.jpg", data=numbered(base, 10_000 + i)
            )
            if res.outcome != "accepted" or not res.image_id:
                raise RuntimeError(f"upload {i}: {res.outcome} {res.reason}")
            started[res.image_id] = (t_up, mp)
            if mode == "spaced":
                until = time.monotonic() + timeout
                while _labelled_at(services, res.image_id)[0] in ("pending", "labelling"):
                    if time.monotonic() > until:
                        raise RuntimeError(f"image {i} not labelled within {timeout} s")
                    time.sleep(0.01)
        until = time.monotonic() + timeout
        while unsettled(services) and time.monotonic() < until:
            time.sleep(0.1)
        result.seconds = time.monotonic() - t0
        time.sleep(0.5)  # let the last log lines reach the file
        result.stages_ms = _stages(log, offset)
    finally:
        for p in procs:
            stop(p)
    with transaction(services.engine) as s:
        rows = s.execute(select(Image.id, Image.status, Image.labelled_at)).all()
    last = None
    for image_id, status, labelled_at in rows:
        if image_id == warm.image_id or image_id not in started:
            continue
        if ImageStatus(status) != ImageStatus.LABELLED or labelled_at is None:
            result.failed += 1
            continue
        result.labelled += 1
        t_up, mp = started[image_id]
        lat = (labelled_at - t_up).total_seconds()
        result.latencies_s.append(lat)
        result.by_mp.setdefault(f"{mp:.1f}", []).append(lat)
        last = labelled_at if last is None or labelled_at > last else last
    if mode == "burst" and last is not None:
        first = min(t for t, _ in started.values())
        result.seconds = (last - first).total_seconds()
    return result


def table(runs: list[Run]) -> str:
    lines = [
        "| run | listeners | images | latency p50 s | p95 s | max s | throughput images/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lat = sorted(r.latencies_s)
        lines.append(
            f"| {'spaced (not queued)' if r.mode == 'spaced' else 'burst (all at once)'} | {r.listeners} | "
            f"{r.labelled}/{r.images} | {_pct(lat, 50):.2f} | {_pct(lat, 95):.2f} | "
            f"{(lat[-1] if lat else 0):.2f} | {r.throughput:.2f} |"
        )
    spaced = [r for r in runs if r.mode == "spaced"]
    if spaced:
        r = spaced[0]
        lines += [
            "",
            f"Spaced, {r.listeners} listener: latency by size (p50 / p95 s) and where the time goes "
            "(pipeline stages from the listener's JSON log, p50 / p95 ms):",
            "",
            "| megapixels | p50 s | p95 s |",
            "|---:|---:|---:|",
        ]
        for mp, vals in sorted(r.by_mp.items(), key=lambda kv: float(kv[0])):
            v = sorted(vals)
            lines.append(f"| {mp} | {_pct(v, 50):.2f} | {_pct(v, 95):.2f} |")
        lines += ["", "| stage | p50 ms | p95 ms |", "|---|---:|---:|"]
        for s in STAGES:
            v = sorted(r.stages_ms.get(s, []))
            lines.append(f"| {s} | {_pct(v, 50):.0f} | {_pct(v, 95):.0f} |")
        total = sorted(r.stages_ms.get("total", []))
        lat_ms = sorted(x * 1e3 for x in r.latencies_s)
        lines.append(
            f"| upload + queue wait (latency - total) | {_pct(lat_ms, 50) - _pct(total, 50):.0f} | "
            f"{_pct(lat_ms, 95) - _pct(total, 95):.0f} |"
        )
    ok = all(_pct(sorted(r.latencies_s), 95) < TARGET_P95_S for r in spaced if r.listeners == 1)
    lines += [
        "",
        f"Target: spaced p95 < {TARGET_P95_S} s with one listener: {'met' if ok else '**not met**'}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=200, help="photos per run")
    parser.add_argument("--listeners", default="1,2", help="listener counts to run, e.g. 1,2")
    parser.add_argument("--modes", default="spaced,burst")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--json", type=Path, help="also write the raw results as JSON here")
    add_doc_option(parser, "e2e")
    args = parser.parse_args(argv)
    print("making photos ...", file=sys.stderr)
    pool = photo_pool()
    runs: list[Run] = []
    for mode in args.modes.split(","):
        for n in (int(x) for x in args.listeners.split(",")):
            print(f"{mode}, {n} listener(s), {args.images} images ...", file=sys.stderr)
            with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
                r = run(
                    mode=mode,
                    listeners=n,
                    images=args.images,
                    work_dir=Path(tmp),
                    pool=pool,
                    timeout=args.timeout,
                )
            lat = sorted(r.latencies_s)
            print(
                f"  p50 {_pct(lat, 50):.2f} s p95 {_pct(lat, 95):.2f} s, {r.throughput:.2f} images/s",
                file=sys.stderr,
            )
            runs.append(r)
    text = table(runs)
    print(text)
    if args.json:
        raw: list[dict[str, Any]] = [r.__dict__ for r in runs]
        args.json.write_text(json.dumps(raw, default=str))
    if args.doc:
        update_doc(args.doc, text, name="e2e", title="End to end")
        print(f"updated {args.doc}", file=sys.stderr)
    return 0 if all(r.failed == 0 for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
