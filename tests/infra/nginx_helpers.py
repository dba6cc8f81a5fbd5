"""Run Debian's nginx as the current user on a rendered Labelkit site, all paths in a temp dir."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def nginx_running(
    conf: Path, prefix: Path, port: int, *, timeout: float = 60
) -> Iterator[subprocess.Popen[bytes]]:
    """nginx in the foreground on ``conf``, once it accepts connections on ``port``; stopped
    gracefully (SIGQUIT) afterwards."""
    proc = subprocess.Popen(
        [NGINX, "-c", str(conf), "-p", str(prefix), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


ROUTE_COOKIE = "lkroute"
SERVED_BY = "X-Labelkit-Server"


def balancer_conf(prefix: Path, port: int, hosts: dict[str, int], *, fail_timeout: int = 3) -> Path:
    """nginx as the stack's load balancer in front of ``hosts`` (name -> port of a host's nginx).

    Like the ALB's duration-based stickiness, a browser stays on the host named by its cookie
    (``lkroute``), which every response sets to the host that answered it: a host that fails
    (refuses, or its nginx answers 502/503/504: its dashboard is down) is skipped for the next
    one, the browser's cookie moves there, and it stays there when the first host comes back.
    Health is passive, as nginx's open-source balancer has it: one failure (``max_fails=1``)
    takes a host out of rotation for ``fail_timeout`` seconds, then it is tried again. Each
    answer names its host in ``X-Labelkit-Server``."""
    for sub in ("logs", "tmp/client", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    upstreams, routes, served = [], [], []
    for name, host_port in hosts.items():
        others = [p for n, p in hosts.items() if n != name]
        servers = [f"server 127.0.0.1:{host_port} max_fails=1 fail_timeout={fail_timeout}s;"]
        servers += [f"server 127.0.0.1:{p} max_fails=1 fail_timeout={fail_timeout}s backup;" for p in others]
        upstreams.append(f"upstream labelkit_{name} {{ {' '.join(servers)} }}")
        routes.append(f"{name} labelkit_{name};")
        served.append(f'"~:{host_port}$" {name};')
    first = next(iter(hosts))
    site = prefix / "balancer.conf"
    site.write_text(
        "\n".join(upstreams)
        + f"""
map $cookie_{ROUTE_COOKIE} $labelkit_pool {{ default labelkit_{first}; {" ".join(routes)} }}
map $upstream_addr $labelkit_served_by {{ default ""; {" ".join(served)} }}
map $labelkit_served_by $labelkit_route_cookie {{
    default "{ROUTE_COOKIE}=$labelkit_served_by; Path=/; HttpOnly; SameSite=Lax";
    "" "";
}}
server {{
    listen 127.0.0.1:{port};
    access_log {prefix}/logs/balancer.access.log;
    client_max_body_size 64m;
    proxy_next_upstream error timeout http_502 http_503 http_504;
    proxy_connect_timeout 5s;
    add_header Set-Cookie $labelkit_route_cookie always;
    add_header {SERVED_BY} $labelkit_served_by always;

    location /_stcore/stream {{
        proxy_pass http://$labelkit_pool;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_read_timeout 3600s;
        proxy_buffering off;
    }}
    location / {{
        proxy_pass http://$labelkit_pool;
        proxy_http_version 1.1;
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_request_buffering off;
        proxy_read_timeout 300s;
    }}
}}
"""
    )
    return main_conf(prefix, site)
