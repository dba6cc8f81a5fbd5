"""Security tests reuse the dashboard fixtures (SQLite and MariaDB, cheap argon2, AppTest)
and the browser fixtures (the whole product started as ``make run`` does, headless Chromium)."""

from __future__ import annotations

from tests.dashboard.conftest import auth, services
from tests.e2e.conftest import browser, page, product

__all__ = ["auth", "browser", "page", "product", "services"]
