"""scripts/audit.py: what fails the audit and what does not (PyPI's answers recorded here,
so the policy is tested without the network; `make audit` runs it against PyPI)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("labelkit_audit", ROOT / "scripts" / "audit.py")
assert _spec and _spec.loader
audit: Any = importlib.util.module_from_spec(_spec)
sys.modules["labelkit_audit"] = audit
_spec.loader.exec_module(audit)

PROJECTS = {
    "safe": {"info": {"version": "2.0"}, "vulnerabilities": []},
    "holey": {
        "info": {"version": "1.0"},
        "vulnerabilities": [{"id": "PYSEC-1", "aliases": ["CVE-1"], "fixed_in": ["1.1"], "summary": "bad"}],
    },
    "behind": {"info": {"version": "9.0"}, "vulnerabilities": []},
}


@pytest.fixture
def pypi(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_get(url: str) -> dict[str, object] | None:
        parts = url.removeprefix(audit.INDEX + "/").split("/")
        if len(parts) == 2:  # /NAME/json
            return PROJECTS.get(parts[0])  # type: ignore[return-value]
        return None  # /NAME/VERSION/json: 404, as from the build machine

    monkeypatch.setattr(audit, "_get", fake_get)


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pins: str, exceptions: str = "") -> tuple[int, str]:
    req = tmp_path / "requirements.txt"
    req.write_text(pins)
    exc = tmp_path / "audit-exceptions.txt"
    exc.write_text(exceptions)
    monkeypatch.setattr(audit.metadata, "distributions", lambda: [])
    out: list[str] = []
    monkeypatch.setattr(audit.sys, "stdout", type("W", (), {"write": lambda self, s: out.append(s)})())
    rc = audit.main(["-r", str(req), "--exceptions", str(exc)])
    return rc, "".join(out)


def test_newest_releases_without_advisories_pass(
    pypi: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rc, out = _run(tmp_path, monkeypatch, "safe==2.0\n")
    assert rc == 0, out
    assert "1 checked" in out


def test_a_known_vulnerability_fails_and_names_the_fix(
    pypi: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rc, out = _run(tmp_path, monkeypatch, "holey==1.0\nsafe==2.0\n")
    assert rc == 1
    assert "VULNERABLE holey==1.0 PYSEC-1 [CVE-1] fixed in 1.1" in out
    rc, out = _run(tmp_path, monkeypatch, "holey==1.0\n", "ignore PYSEC-1  not reachable from our code\n")
    assert rc == 0 and "ignored" in out


def test_an_unchecked_package_fails_unless_listed_with_a_reason(
    pypi: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rc, out = _run(tmp_path, monkeypatch, "behind==8.0\n")
    assert rc == 1
    assert "UNCHECKED  behind==8.0 (newest is 9.0" in out
    rc, out = _run(tmp_path, monkeypatch, "behind==8.0\n", "unchecked behind==8.0  needs Python 3.12\n")
    assert rc == 0, out
    with pytest.raises(SystemExit, match="needs a reason"):
        _run(tmp_path, monkeypatch, "behind==8.0\n", "unchecked behind==8.0\n")


def test_stale_exceptions_are_reported(pypi: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rc, out = _run(tmp_path, monkeypatch, "safe==2.0\n", "unchecked safe==2.0  was behind once\n")
    assert rc == 0
    assert "stale" in out and "now checked" in out


def test_pypi_unreachable_is_an_error_not_a_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(url: str) -> None:
        raise audit.urllib.error.URLError("no route")

    monkeypatch.setattr(audit, "_get", down)
    rc, out = _run(tmp_path, monkeypatch, "safe==2.0\n")
    assert rc == 2
    assert "PyPI unreachable" in out


def test_names_and_local_versions_are_normalised() -> None:
    assert audit.canonical("Typing_Extensions") == "typing-extensions"
    assert audit.public_version("2.13.0+cpu") == "2.13.0"
