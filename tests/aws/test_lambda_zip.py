"""The Lambda deployment zip: reproducible, complete, and lean.

Builds it twice (pip installs manylinux2014 wheels for CPython 3.11 into a
temp dir each time; pip's cache makes the second one quicker), then imports
the handler from the unpacked zip in an isolated interpreter that sees only the
zip and what the Lambda runtime provides (boto3 and its dependencies).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import boto3
import botocore
import dateutil
import pytest
import s3transfer
import six
import urllib3

from infra_scripts import lambda_zip

pytestmark = [pytest.mark.aws, pytest.mark.slow]


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    first = tmp_path_factory.mktemp("build1") / "lambda.zip"
    second = tmp_path_factory.mktemp("build2") / "lambda.zip"
    for out in (first, second):
        # native_fallback: where the manylinux2014 wheels cannot be fetched, build for this
        # interpreter instead (this machine is CPython 3.11 on x86_64 Linux too).
        lambda_zip.build(out, native_fallback=True)
    return first, second


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_builds_are_byte_identical(builds: tuple[Path, Path]) -> None:
    first, second = builds
    assert sha256(first) == sha256(second)
    with zipfile.ZipFile(first) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}


def test_zip_holds_the_handler_the_core_and_only_runtime_deps(builds: tuple[Path, Path]) -> None:
    with zipfile.ZipFile(builds[0]) as zf:
        names = zf.namelist()
    tops = {n.split("/")[0] for n in names}
    for needed in ("lambda_labeler/handler.py", "labelkit/pipeline.py", "labelkit/labelers/rekognition.py"):
        assert needed in names
    for package in ("sqlalchemy", "pymysql", "aws_lambda_powertools", "pydantic", "pydantic_settings", "PIL"):
        assert package in tops, package
    for unwanted in ("streamlit", "torch", "pandas", "onnxruntime", "boto3", "botocore", "bin"):
        assert unwanted not in tops, unwanted
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    assert builds[0].stat().st_size < lambda_zip.MAX_ZIPPED


def test_handler_imports_from_the_zip_with_only_the_runtimes_boto3(
    builds: tuple[Path, Path], tmp_path: Path
) -> None:
    # GIVEN the zip unpacked as /var/task, and a directory standing in for the runtime's boto3
    task = tmp_path / "task"
    with zipfile.ZipFile(builds[0]) as zf:
        zf.extractall(task)
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    for module in (boto3, botocore, s3transfer, dateutil, urllib3):
        (runtime / module.__name__).symlink_to(Path(module.__file__ or "").parent)
    (runtime / "six.py").symlink_to(six.__file__ or "")
    code = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(task)!r}, {str(runtime)!r}]
        import numpy, PIL
        from lambda_labeler import handler
        from labelkit.labelers.rekognition import RekognitionLabeler
        from labelkit.errors import LabelerError
        import io
        from PIL import Image
        assert numpy.__file__.startswith({str(task)!r}), numpy.__file__
        buf = io.BytesIO(); Image.new("RGB", (120, 90), (200, 30, 30)).save(buf, "JPEG")
        labeler = RekognitionLabeler()
        labeler.check_limits(buf.getvalue(), in_s3=True)
        buf = io.BytesIO(); Image.new("RGB", (120, 90)).save(buf, "WEBP")
        try:
            labeler.check_limits(buf.getvalue(), in_s3=True)
        except LabelerError as e:
            assert e.permanent
        else:
            raise AssertionError("WEBP accepted")
        assert handler._pipeline is None
        print(numpy.__version__, PIL.__version__)
        """
    )
    # WHEN an isolated interpreter (no site-packages) imports the handler and runs intake
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    # THEN everything the handler imports is in the zip, with the Lambda's pinned versions
    assert result.returncode == 0, result.stderr
    pins = dict(
        line.split("==")
        for line in lambda_zip.REQUIREMENTS.read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert result.stdout.split() == [pins["numpy"], pins["pillow"]]
