"""Build the Lambda deployment package reproducibly.

Usage: ``python -m infra_scripts.lambda_zip --out build/lambda.zip``.

The zip holds ``lambda_labeler/`` (the handler), the ``labelkit`` package and the
pinned runtime dependencies of ``requirements-lambda.txt``, installed with::

    pip install --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \\
        --python-version 3.11 --implementation cp --target <tmp>

so the wheels are the ones the python3.11 Lambda runtime (Amazon Linux 2,
x86_64, glibc 2.26) can load, whatever machine builds the zip. The
requirements file is the full dependency closure (``--no-deps`` keeps pip's
resolver out of it); :func:`check_closure` fails the build if a dependency is
missing. boto3/botocore come from the Lambda runtime and are not bundled.

Two builds from the same sources give the same bytes (same sha256): entries are
sorted, every timestamp is 1980-01-01 00:00, permissions are fixed (0644 files;
no directory entries), and ``__pycache__``/``.pyc``, dotfiles and pip's
``bin/`` scripts (whose shebang names the building interpreter) are left out.
Lambda compiles nothing into /var/task (read-only); the bytecode cost is paid
at cold start, a few hundred ms.

If the platform-specific download is not possible (no network and no local
wheel for the platform), ``--native-fallback`` installs for the building
interpreter instead and says so; such a zip only suits a Lambda if this machine
matches the runtime (CPython 3.11, x86_64, glibc <= 2.26 wheels).

The local labeller is not usable from this zip: onnxruntime (~15 MB zipped) and
the exported ONNX model would have to come from a Lambda layer or a container
image. The Lambda's default labeller is therefore ``rekognition``.

Exit status: 0 on success, 1 if pip or the checks fail.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lambda_labeler", "labelkit")
REQUIREMENTS = ROOT / "requirements-lambda.txt"
PLATFORM = "manylinux2014_x86_64"
PYTHON_VERSION = "3.11"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644  # regular file, rw-r--r--
# Lambda's limits: 50 MB for a direct zip upload, 250 MB unzipped (function + layers).
MAX_ZIPPED = 50 * 1024 * 1024
MAX_UNZIPPED = 250 * 1024 * 1024
# Distributions the python3.11 Lambda runtime already provides.
RUNTIME_PROVIDED = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
)
_SKIP_SUFFIXES = (".pyc", ".pyo", ".onnx")


class BuildError(Exception):
    pass


def _skipped(rel: Path, *, source: bool) -> bool:
    parts = rel.parts
    if "__pycache__" in parts or rel.suffix in _SKIP_SUFFIXES:
        return True
    if source:  # caches and editor files in the work tree (wheels may ship ".libs" dirs)
        return any(p.startswith(".") for p in parts)
    return parts[0] == "bin"


def _walk(base: Path, prefix: Path = Path(), *, source: bool) -> Iterator[tuple[str, Path]]:
    """``(archive name, file)`` for every file under ``base`` worth shipping."""
    for path in base.rglob("*"):
        rel = prefix / path.relative_to(base)
        if path.is_file() and not _skipped(rel, source=source):
            yield rel.as_posix(), path


def pip_install(
    target: Path,
    *,
    requirements: Path = REQUIREMENTS,
    platform: str | None = PLATFORM,
    python_version: str = PYTHON_VERSION,
) -> None:
    """Install ``requirements`` into ``target``: binary wheels for ``platform``, or natively if None."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--no-deps",
        "--no-compile",
        "--no-warn-script-location",
        "--target",
        str(target),
        "-r",
        str(requirements),
    ]
    if platform is not None:
        cmd += [
            "--only-binary=:all:",
            "--platform",
            platform,
            "--python-version",
            python_version,
            "--implementation",
            "cp",
        ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BuildError(f"pip install failed ({' '.join(cmd[3:])}):\n{result.stderr.strip()}")


def check_closure(target: Path, *, python_version: str = PYTHON_VERSION) -> None:
    """Fail if a distribution in ``target`` requires one that is neither there nor in the runtime."""
    from importlib.metadata import distributions

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    env: dict[str, str] = {
        "implementation_version": f"{python_version}.0",
        "platform_release": "",
        "platform_version": "",
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "platform_python_implementation": "CPython",
        "implementation_name": "cpython",
        "os_name": "posix",
        "extra": "",
    }
    dists = list(distributions(path=[str(target)]))
    present = {canonicalize_name(d.metadata["Name"]) for d in dists}
    available = present | {canonicalize_name(n) for n in RUNTIME_PROVIDED}
    missing: list[str] = []
    for dist in dists:
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            if canonicalize_name(req.name) not in available:
                missing.append(f"{dist.metadata['Name']} needs {req}")
    if missing:
        raise BuildError("requirements-lambda.txt is not a full closure:\n  " + "\n  ".join(sorted(missing)))


def write_zip(out: Path, files: Iterable[tuple[str, Path]]) -> str:
    """Write ``files`` (archive name, path) into ``out`` deterministically; returns its sha256."""
    entries = sorted(files)
    names = [name for name, _ in entries]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise BuildError(f"two files for the same archive name: {dupes[:5]}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    unzipped = 0
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name, path in entries:
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.create_system = 3  # Unix, so external_attr is read as a mode
            info.external_attr = FILE_MODE << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = path.read_bytes()
            unzipped += len(data)
            zf.writestr(info, data, compresslevel=6)
    os.replace(tmp, out)
    if unzipped > MAX_UNZIPPED:
        raise BuildError(f"{out}: {unzipped / 2**20:.0f} MB unzipped, over Lambda's 250 MB")
    return hashlib.sha256(out.read_bytes()).hexdigest()


def build(
    out: Path,
    *,
    requirements: Path = REQUIREMENTS,
    platform: str | None = PLATFORM,
    native_fallback: bool = False,
    source_root: Path = ROOT,
) -> str:
    """Build the zip at ``out``; returns its sha256."""
    with tempfile.TemporaryDirectory(prefix="labelkit-lambda-") as tmp:
        target = Path(tmp) / "deps"
        try:
            pip_install(target, requirements=requirements, platform=platform)
        except BuildError:
            if not native_fallback or platform is None:
                raise
            print(
                f"WARNING: no {platform} wheels available; installing for this interpreter instead "
                "(the zip only suits a Lambda if this machine matches its runtime)",
                file=sys.stderr,
            )
            pip_install(target, requirements=requirements, platform=None)
        check_closure(target)
        files: list[tuple[str, Path]] = list(_walk(target, source=False))
        for package in PACKAGES:
            files += _walk(source_root / package, Path(package), source=True)
        return write_zip(out, files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the Lambda deployment zip reproducibly.")
    parser.add_argument("--out", type=Path, default=Path("build/lambda.zip"))
    parser.add_argument("--requirements", type=Path, default=REQUIREMENTS)
    parser.add_argument(
        "--platform", default=PLATFORM, help="pip --platform tag ('native': this interpreter)"
    )
    parser.add_argument(
        "--native-fallback",
        action="store_true",
        help="install for this interpreter if the platform wheels cannot be downloaded",
    )
    args = parser.parse_args(argv)
    platform = None if args.platform == "native" else args.platform
    try:
        digest = build(
            args.out, requirements=args.requirements, platform=platform, native_fallback=args.native_fallback
        )
    except BuildError as e:
        print(f"lambda zip: {e}", file=sys.stderr)
        return 1
    size = args.out.stat().st_size
    print(f"{args.out}  {size / 2**20:.1f} MB  sha256 {digest}")
    if size > MAX_ZIPPED:
        print("note: over 50 MB, so deploy it through S3 (not a direct upload)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
