"""Behind the load balancer a person may be served by any host, and each host's dashboard keeps
its own Streamlit caches. So every ``st.cache_data`` in the dashboard is either short-lived (a
minute at most: another host shows an edit at most that late) or keyed by a value read from the
database that changes with what it caches (never stale); and every ``st.cache_resource`` holds
process-wide machinery, no one's data. A new cache has to be added to one of these lists, with
its reason (docs/aws.md, "What a host keeps to itself")."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.e2e.conftest import ROOT

MAX_TTL_SECONDS = 60

# (module, function): why it is never stale on another host.
DATABASE_KEYED = {
    ("dashboard/core.py", "_thumbnail"): "object key + its sha256 + the stored thumbnail's key",
    ("dashboard/core.py", "_display_copy"): "object key + its sha256 + the boxes drawn",
    ("dashboard/core.py", "_face_crop"): "object key + its sha256 + the face's box",
    ("dashboard/app_pages/duplicates.py", "_cached_groups"): "the owner's hash version",
}
# (module, function): what it holds.
PROCESS_RESOURCES = {
    ("dashboard/core.py", "services"): "engine, store, queue",
    ("dashboard/core.py", "authenticator"): "the sign-in backend",
    ("dashboard/core.py", "session_store"): "the session store (sessions are rows)",
    ("dashboard/app_pages/pipeline.py", "_current_model_version"): "the configured labellers' version",
}


def _caches(root: Path = ROOT) -> dict[tuple[str, str], tuple[str, float | None]]:
    """Every function decorated with ``st.cache_data`` / ``st.cache_resource`` under
    ``root``/dashboard: (module, function) -> (kind, its ``ttl`` in seconds or None)."""
    found: dict[tuple[str, str], tuple[str, float | None]] = {}
    for path in sorted((root / "dashboard").rglob("*.py")):
        module = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef):
                continue
            for deco in node.decorator_list:
                target = deco.func if isinstance(deco, ast.Call) else deco
                if not (
                    isinstance(target, ast.Attribute) and target.attr in ("cache_data", "cache_resource")
                ):
                    continue
                ttl = None
                for kw in deco.keywords if isinstance(deco, ast.Call) else []:
                    if kw.arg == "ttl":
                        value = kw.value.value if isinstance(kw.value, ast.Constant) else None
                        assert isinstance(value, int | float), f"{module}:{node.name}: ttl must be a number"
                        ttl = float(value)
                found[(module, node.name)] = (target.attr, ttl)
    return found


def _problems(caches: dict[tuple[str, str], tuple[str, float | None]]) -> list[str]:
    """The caches that could show one host's stale data, or someone's data, on another."""
    problems = []
    for (module, name), (kind, ttl) in caches.items():
        if kind == "cache_data" and (module, name) not in DATABASE_KEYED:
            if ttl is None or ttl > MAX_TTL_SECONDS:
                problems.append(
                    f"{module}:{name} caches data for {ttl or 'ever'} s on one host: give it "
                    f"ttl <= {MAX_TTL_SECONDS} or key it by a value from the database (DATABASE_KEYED)"
                )
        if kind == "cache_resource" and (module, name) not in PROCESS_RESOURCES:
            problems.append(f"{module}:{name}: a process-wide resource holding no one's data? list it")
    return problems


def test_every_dashboard_cache_is_short_lived_or_keyed_by_the_database() -> None:
    # GIVEN every Streamlit cache of the dashboard
    caches = _caches()
    assert len(caches) >= 9, caches  # the walk finds them
    # THEN each cache of data lives a minute at most, or is keyed by what the database says, and
    # each cached resource is known to hold no one's data
    assert _problems(caches) == []
    # AND the lists name only caches that exist, of the kind they say
    for key in DATABASE_KEYED:
        assert caches.get(key, ("", None))[0] == "cache_data", key
    for key in PROCESS_RESOURCES:
        assert caches.get(key, ("", None))[0] == "cache_resource", key


def test_the_check_finds_long_lived_and_unlisted_caches(tmp_path: Path) -> None:
    # GIVEN a dashboard with a day-long cache of query results, one without a ttl and an
    # unlisted resource
    (tmp_path / "dashboard").mkdir()
    (tmp_path / "dashboard" / "page.py").write_text(
        "import streamlit as st\n\n"
        "@st.cache_data(ttl=86400)\ndef totals(user_id):\n    return 1\n\n"
        "@st.cache_data(show_spinner=False)\ndef names(user_id):\n    return []\n\n"
        "@st.cache_data(ttl=30)\ndef recent(user_id):\n    return []\n\n"
        "@st.cache_resource\ndef people():\n    return {}\n"
    )
    # WHEN checked, THEN exactly those three are reported
    problems = _problems(_caches(tmp_path))
    assert [p.split(" ", 1)[0] for p in problems] == [
        "dashboard/page.py:totals",
        "dashboard/page.py:names",
        "dashboard/page.py:people:",
    ]
