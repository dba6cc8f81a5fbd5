"""Packaging: ``pip install -e .`` works and gives the ``labelkit`` command, a wheel holds
the code with its data files, and pyproject's dependencies follow requirements.txt's pins."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from labelkit.cli import COMMANDS

# Builds wheels and runs the commands as processes: `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("labelkit", "dashboard", "sqs_listener", "lambda_labeler", "infra_scripts")


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name, version = line.split("==")
            pins[re.sub(r"\[.*\]", "", name).lower()] = version
    return pins


def _project() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _source_copy(tmp_path: Path) -> Path:
    """The project's code and metadata, copied (a build must not write into the checkout)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return src


def test_pyproject_dependencies_follow_the_pins() -> None:
    # GIVEN the runtime pins and pyproject's dependencies
    pins = _pins(ROOT / "requirements.txt")
    deps = {}
    for spec in _project()["dependencies"]:  # type: ignore[attr-defined]
        name, low = spec.split(">=")
        deps[name.lower()] = low
    # THEN they name the same packages, each at least the pinned version
    assert deps == pins
    # AND what only infra_scripts needs is an optional group, not the runtime set
    infra = _pins(ROOT / "requirements-infra.txt")
    assert "jinja2" in infra and "jinja2" not in pins
    extras = _project()["optional-dependencies"]["infra"]  # type: ignore[index]
    assert [e.split(">=")[0].lower() for e in extras] == sorted(infra)


def test_a_wheel_holds_the_code_its_data_and_the_console_script(tmp_path: Path) -> None:
    src = _source_copy(tmp_path)
    out = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            ".",
        ],
        cwd=src,
        check=True,
        capture_output=True,
        timeout=600,
    )
    [wheel] = out.glob("labelkit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected_files = [
        *(p.relative_to(ROOT).as_posix() for p in (ROOT / "labelkit/labelers/data").iterdir()),
        *(p.relative_to(ROOT).as_posix() for p in (ROOT / "labelkit/db/migrations/versions").glob("*.py")),
        "labelkit/db/migrations/script.py.mako",
        "labelkit/db/migrations/env.py",
        "infra_scripts/labelkit.yaml",
        *(p.relative_to(ROOT).as_posix() for p in (ROOT / "infra_scripts/templates").iterdir()),
        "dashboard/asgi.py",
        "dashboard/app_pages/gallery.py",
        "sqs_listener/__main__.py",
        "lambda_labeler/handler.py",
    ]
    missing = sorted(set(expected_files) - names)
    assert not missing, missing
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "labelkit = labelkit.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def _installed_here() -> str:
    """Where this environment's pip has labelkit installed ("" if it has none)."""
    shown = subprocess.run(
        [sys.executable, "-m", "pip", "show", "labelkit"], capture_output=True, text=True, timeout=120
    )
    found = [line for line in shown.stdout.splitlines() if line.startswith(("Location:", "Editable project"))]
    return "\n".join(found)


def test_an_editable_install_gives_the_labelkit_command(tmp_path: Path) -> None:
    # GIVEN `pip install -e .` of the project (into a prefix, no dependencies: they are here)
    src = _source_copy(tmp_path)
    prefix = tmp_path / "prefix"
    installed_before = _installed_here()
    subprocess.run(
        # --ignore-installed: pip would otherwise uninstall the venv's own (editable) labelkit first
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--ignore-installed",
            "-q",
        ]
        + ["--prefix", str(prefix), "-e", "."],
        cwd=src,
        check=True,
        capture_output=True,
        timeout=600,
    )
    site = next(prefix.glob("lib/python*/site-packages"))
    script = prefix / "bin" / "labelkit"
    assert script.is_file()
    # (and the venv running the tests keeps its own install: `make test` must not undo `make`)
    assert _installed_here() == installed_before
    # WHEN the installed command runs from elsewhere, with only the install on the path: no
    # site processing (-S), so the venv's own editable install (a .pth) is not loaded; the
    # venv's packages are on the path for the dependencies only
    code = (
        "import site, sys; site.addsitedir(sys.argv[1]); sys.path.append(sys.argv[2]); "
        "import labelkit; print(labelkit.__file__); "
        "from labelkit.cli import main; raise SystemExit(main(['--help']))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-S", "-c", code, str(site), sysconfig.get_paths()["purelib"]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # THEN it is the editable source that answers, listing every command
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith(str(src / "labelkit"))
    for command in COMMANDS:
        assert f"  {command}" in done.stdout


@pytest.mark.parametrize("command", ["listener", "export", "label", "counts", "relabel", "infra"])
def test_each_command_is_its_module_run_as_main(command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "labelkit", command, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout and "--help" in done.stdout


def test_an_unknown_command_says_what_there_is() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "labelkit", "frobnicate"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "unknown command 'frobnicate'" in done.stderr and "listener" in done.stderr
