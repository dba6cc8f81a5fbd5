"""Run Debian's nginx as the current user on a rendered Labelkit site, all paths in a temp dir."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

from infra_scripts.render import NGINX_SITE, HostConfig, render_host_files

NGINX = "/usr/sbin/nginx"


def main_conf(prefix: Path, site: Path) -> Path:
    """A minimal nginx.conf that includes ``site``; pid, logs and temp files under ``prefix``."""
    for sub in ("logs", "tmp/client", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    # As root, nginx would hand its workers to "nobody", who cannot use the temp dir.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log info;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {prefix}/tmp/client;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    access_log {prefix}/logs/access.log;
    include {site};
}}
"""
    )
    return conf


def render_site(prefix: Path, cfg: HostConfig) -> Path:
    """Render the site with logs inside ``prefix`` and return the main conf that includes it."""
    cfg.access_log = str(prefix / "logs" / "labelkit.access.log")
    cfg.error_log = str(prefix / "logs" / "labelkit.error.log")
    site = prefix / "labelkit.conf"
    prefix.mkdir(parents=True, exist_ok=True)
    site.write_text(render_host_files(cfg)[NGINX_SITE])
    return main_conf(prefix, site)


def nginx_test(conf: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NGINX, "-t", "-c", str(conf), "-p", str(prefix)], capture_output=True, text=True, timeout=30
    )
