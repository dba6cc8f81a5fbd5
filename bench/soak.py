"""Soak test of the local pipeline: ``python -m bench.soak --images 1000 --listeners 2``.

One thread uploads photos of mixed sizes, 320x214 to 2400x1600 (real photos from
``labelkit/testing/photos``), through ``upload_image`` while N real ``python -m sqs_listener``
processes label them with the real local model. Then a report: throughput, upload-to-labelled
latency (``images.created_at`` to ``labelled_at``), lost images (not labelled) and duplicated
label rows. Exits 1 if anything was lost or duplicated. Everything stays on this machine
(SQLite database and queue, a folder).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select

from labelkit.db.engine import transaction
from labelkit.db.models import Image, ImageStatus, LabelRow
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

SIZES = ((320, 214), (640, 427), (1024, 683), (1600, 1067), (2400, 1600))


@dataclass
class SoakReport:
    images: int
    listeners: int
    uploaded: int = 0
    labelled: int = 0
    failed: int = 0
    lost: int = 0
    duplicated_label_rows: int = 0
    upload_seconds: float = 0.0
    total_seconds: float = 0.0
    throughput_images_per_s: float = 0.0
    latency_p50_s: float = 0.0
    latency_p95_s: float = 0.0
    latency_max_s: float = 0.0
    upload_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated_label_rows == 0 and not self.upload_errors

    def text(self) -> str:
        return "\n".join(
            [
                f"soak: {self.images} images, {self.listeners} listener processes",
                f"  uploaded {self.uploaded} in {self.upload_seconds:.1f} s",
                f"  labelled {self.labelled}, failed {self.failed}, lost {self.lost}, "
                f"duplicated label rows {self.duplicated_label_rows}",
                f"  throughput {self.throughput_images_per_s:.2f} images/s "
                f"(first upload to last label: {self.total_seconds:.1f} s)",
                f"  upload->labelled latency p50 {self.latency_p50_s:.2f} s, "
                f"p95 {self.latency_p95_s:.2f} s, max {self.latency_max_s:.2f} s",
                "  result: " + ("OK" if self.ok else "FAILED"),
            ]
        )


def photo_pool(seeds: int = 5) -> list[bytes]:
    """Real photos (china.jpg with sensor-like noise) in every size of SIZES, made up front so
    the uploader measures the pipeline, not photo synthesis."""
    return [
        encode(photo(w, h, noise=6, seed=seed), "JPEG", quality=85) for seed in range(seeds) for w, h in SIZES
    ]


def numbered(base: bytes, i: int) -> bytes:
    """``base`` with a JPEG comment segment (COM) naming ``i`` after SOI: a distinct file
    (distinct sha256, so no duplicate refusal) that decodes to the same pixels."""
    text = f"labelkit soak {i}".encode()
    return base[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + base[2:]


def _uploader(services: Services, owner: str, n: int, report: SoakReport) -> None:
    pool = photo_pool()
    t0 = time.monotonic()
    for i in range(n):
        data = numbered(pool[i % len(pool)], i)
        result = upload_image(services=services, owner_id=owner, filename=f"soak-{i}.jpg", data=data)
        if result.outcome == "accepted":
            report.uploaded += 1
        else:
            report.upload_errors.append(f"{i}: {result.outcome} {result.reason}")
    report.upload_seconds = time.monotonic() - t0


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _seconds(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds()


def measure(services: Services, report: SoakReport) -> SoakReport:
    """Fill ``report`` from the database: statuses, latencies, duplicated label keys."""
    with transaction(services.engine) as s:
        rows = s.execute(select(Image.status, Image.created_at, Image.labelled_at)).all()
        dup_counts = s.scalars(
            select(func.count())
            .select_from(LabelRow)
            .group_by(
                LabelRow.image_id, LabelRow.source, LabelRow.model_version, LabelRow.name, LabelRow.instance
            )
            .having(func.count() > 1)
        ).all()
    report.duplicated_label_rows = sum(int(n) - 1 for n in dup_counts)
    labelled = [(c, lab) for st, c, lab in rows if ImageStatus(st) == ImageStatus.LABELLED and lab]
    report.labelled = len(labelled)
    report.failed = sum(ImageStatus(st) == ImageStatus.FAILED for st, _, _ in rows)
    report.lost = report.images - report.labelled
    latencies = sorted(_seconds(c, lab) for c, lab in labelled)
    if labelled:
        first = min(c for c, _ in labelled)
        last = max(lab for _, lab in labelled)
        report.total_seconds = max(_seconds(first, last), 1e-9)
        report.throughput_images_per_s = len(labelled) / report.total_seconds
        report.latency_p50_s = _percentile(latencies, 50)
        report.latency_p95_s = _percentile(latencies, 95)
        report.latency_max_s = latencies[-1]
    return report


def run_soak(
    *, images: int, listeners: int, work_dir: Path, workers: int = 1, timeout: float = 3600
) -> SoakReport:
    settings = local_settings(work_dir / "data", visibility=60, max_receives=4)
    services = build_services(settings)
    owner = make_owner(services, "soak")
    report = SoakReport(images=images, listeners=listeners)
    env = local_listener_env(settings)
    log = work_dir / "listeners.log"
    procs = [start_listener(env, work_dir, log, workers=workers) for _ in range(listeners)]
    try:
        uploader = threading.Thread(target=_uploader, args=(services, owner, images, report), name="uploader")
        uploader.start()
        uploader.join()
        deadline = time.monotonic() + timeout
        while unsettled(services) and time.monotonic() < deadline:
            if all(p.poll() is not None for p in procs):
                break  # every listener died: nothing more will happen
            time.sleep(0.5)
    finally:
        for p in procs:
            stop(p)
    return measure(services, report)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--listeners", type=int, default=2, help="listener processes")
    p.add_argument("--workers", type=int, default=1, help="workers per listener process")
    p.add_argument("--timeout", type=float, default=3600, help="seconds to wait for labelling to finish")
    p.add_argument("--work-dir", type=Path, help="keep the data here (default: a temporary folder)")
    p.add_argument("--json", action="store_true", help="print the report as JSON too")
    args = p.parse_args(argv)
    if args.work_dir:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        report = run_soak(
            images=args.images,
            listeners=args.listeners,
            work_dir=args.work_dir,
            workers=args.workers,
            timeout=args.timeout,
        )
    else:
        with tempfile.TemporaryDirectory(prefix="labelkit-soak-") as tmp:
            report = run_soak(
                images=args.images,
                listeners=args.listeners,
                work_dir=Path(tmp),
                workers=args.workers,
                timeout=args.timeout,
            )
    print(report.text())
    if args.json:
        print(json.dumps(asdict(report) | {"ok": report.ok}))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
