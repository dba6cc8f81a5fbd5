"""Known-vulnerability audit: every installed package and every pinned requirement.

``python scripts/audit.py`` (``make audit``, part of ``make lint``). Exit 0: nothing known
and nothing unchecked; 1: a known vulnerability, or a package that could not be checked
and is not listed in ``audit-exceptions.txt``; 2: PyPI could not be reached.

Why not plain pip-audit: pip-audit asks PyPI's per-version JSON API
(``/pypi/NAME/VERSION/json``) or OSV, and from the build machine the first answers 404
and OSV is unreachable, so pip-audit checks nothing there. PyPI's project JSON
(``/pypi/NAME/json``) does answer, and its ``vulnerabilities`` list is PyPI's advisories
(the PyPA advisory database and OSV) for the project's newest release. So:

* a package at its newest release is checked exactly (that list is its advisories);
* an older one is looked up the way pip-audit does (per-version JSON); where that is
  not answered it is *unchecked*, and must be listed in ``audit-exceptions.txt`` with
  the reason it is behind (e.g. the Lambda runtime's glibc) — a new unchecked package
  fails the audit, so "behind and unknown" never passes silently;
* a vulnerability can be accepted only by listing its id there, with a reason.

``audit-exceptions.txt`` lines: ``unchecked NAME==VERSION  reason`` or
``ignore VULN-ID  reason``; ``#`` starts a comment.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = sorted(ROOT.glob("requirements*.txt"))
EXCEPTIONS = ROOT / "audit-exceptions.txt"
INDEX = "https://pypi.org/pypi"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;#]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def public_version(version: str) -> str:
    return version.split("+", 1)[0]  # torch 2.13.0+cpu is torch 2.13.0 on PyPI


@dataclass
class Result:
    name: str
    version: str
    where: set[str] = field(default_factory=set)
    latest: str = ""
    vulns: list[dict[str, Any]] = field(default_factory=list)
    checked: bool = False
    error: str = ""


def packages(requirements: list[Path]) -> dict[tuple[str, str], set[str]]:
    """(name, version) -> where it comes from: this environment and the pinned files."""
    found: dict[tuple[str, str], set[str]] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and canonical(name) != "labelkit":  # this project itself (the editable install)
            found.setdefault((canonical(name), public_version(dist.version)), set()).add("installed")
    for path in requirements:
        for line in path.read_text(encoding="utf-8").splitlines():
            m = PIN.match(line.strip())
            if m:
                found.setdefault((canonical(m.group(1)), public_version(m.group(3))), set()).add(path.name)
    return found


def _get(url: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            data: dict[str, object] = json.load(r)
            return data
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def check(name: str, version: str) -> Result:
    res = Result(name=name, version=version)
    try:
        project = _get(f"{INDEX}/{name}/json")
        if project is None:
            res.error = "not on PyPI"
            return res
        info = project.get("info")
        res.latest = str(info.get("version", "")) if isinstance(info, dict) else ""
        if res.latest == version:
            vulns = project.get("vulnerabilities") or []
        else:
            exact = _get(f"{INDEX}/{name}/{version}/json")  # what pip-audit asks
            if exact is None:
                return res  # unchecked
            vulns = exact.get("vulnerabilities") or []
        res.vulns = list(vulns) if isinstance(vulns, list) else []
        res.checked = True
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        res.error = f"PyPI unreachable: {e}"
    return res


def load_exceptions(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    unchecked: dict[str, str] = {}
    ignored: dict[str, str] = {}
    if not path.exists():
        return unchecked, ignored
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        kind, _, rest = line.partition(" ")
        key, _, reason = rest.strip().partition(" ")
        if not reason.strip():
            raise SystemExit(f"{path.name}: every exception needs a reason: {raw!r}")
        if kind == "unchecked":
            pname, _, ver = key.partition("==")
            unchecked[f"{canonical(pname)}=={ver}"] = reason.strip()
        elif kind == "ignore":
            ignored[key] = reason.strip()
        else:
            raise SystemExit(f"{path.name}: unknown kind {kind!r} in {raw!r}")
    return unchecked, ignored


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-r", "--requirement", type=Path, action="append", help="pinned files (default: all)")
    parser.add_argument("--exceptions", type=Path, default=EXCEPTIONS)
    args = parser.parse_args(argv)
    found = packages(args.requirement or REQUIREMENTS)
    unchecked_ok, ignored = load_exceptions(args.exceptions)

    with cf.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda kv: check(*kv), sorted(found)))
    for r in results:
        r.where = found[(r.name, r.version)]

    out = sys.stdout
    failures = 0
    errors = [r for r in results if r.error]
    for r in errors:
        out.write(f"ERROR      {r.name}=={r.version}: {r.error}\n")
    for r in results:
        for v in r.vulns:
            vid = str(v.get("id", "?"))
            aliases = ", ".join(str(a) for a in (v.get("aliases") or []))
            fixed = ", ".join(str(f) for f in (v.get("fixed_in") or [])) or "no fix yet"
            if vid in ignored:
                out.write(f"ignored    {r.name}=={r.version} {vid} ({ignored[vid]})\n")
                continue
            failures += 1
            out.write(f"VULNERABLE {r.name}=={r.version} {vid} [{aliases}] fixed in {fixed}\n")
            out.write(f"           {str(v.get('summary') or v.get('details') or '')[:200]}\n")
    unchecked = [r for r in results if not r.checked and not r.error]
    for r in unchecked:
        key = f"{r.name}=={r.version}"
        if key in unchecked_ok:
            out.write(f"unchecked  {key} (newest {r.latest}; listed: {unchecked_ok[key]})\n")
        else:
            failures += 1
            out.write(
                f"UNCHECKED  {key} (newest is {r.latest}; PyPI lists advisories only for the newest "
                f"release here): upgrade it, or list it in {args.exceptions.name} with the reason\n"
            )
    current = {f"{r.name}=={r.version}" for r in results}
    for key in sorted(set(unchecked_ok) - {f"{r.name}=={r.version}" for r in unchecked}):
        note = "now checked" if key in current else "no longer used"
        out.write(f"stale      {args.exceptions.name}: {key} is {note}; remove the line\n")
    checked = sum(r.checked for r in results)
    out.write(
        f"{len(results)} packages: {checked} checked, {len(unchecked)} unchecked, {len(errors)} errors, "
        f"{sum(len(r.vulns) for r in results)} known vulnerabilities\n"
    )
    if errors:
        return 2
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
