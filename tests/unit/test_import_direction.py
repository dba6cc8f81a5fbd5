"""Dependencies point one way: entry points (dashboard, listener, Lambda, infra CLI) sit on
the core, benchmarks and tests on both, and run time never reaches the model build.

The rules are import-linter contracts in ``pyproject.toml``; this runs them (a new upward
import fails ``make test``) and checks that the contracts that list modules (the core may
not import ``labelkit.testing``; ``labelkit.domain`` imports nothing of the project) name
every module of ``labelkit``.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _contracts() -> dict[str, dict[str, object]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    kept = result.stdout.count(" KEPT")
    assert kept == len(_contracts()) >= 5, result.stdout


def _labelkit_modules() -> set[str]:
    return {
        f"labelkit.{p.stem if p.suffix == '.py' else p.name}"
        for p in (ROOT / "labelkit").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }


def test_every_core_module_is_forbidden_to_import_the_test_helpers() -> None:
    listed = set(_contracts()["core-not-testing"]["source_modules"])  # type: ignore[arg-type]
    core = _labelkit_modules() - {"labelkit.testing"}
    assert listed == core, f"add to pyproject.toml's core-not-testing contract: {sorted(core - listed)}"


def test_the_domain_module_is_forbidden_every_other_module() -> None:
    listed = set(_contracts()["domain-imports-nothing"]["forbidden_modules"])  # type: ignore[arg-type]
    others = _labelkit_modules() - {"labelkit.domain"}
    missing = sorted(others - listed)
    assert listed == others, f"add to pyproject.toml's domain-imports-nothing contract: {missing}"
