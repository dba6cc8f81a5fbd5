"""Host files from ``infra_scripts/templates/`` (Jinja2, strict: a missing variable is an error).

:func:`render_host_files` returns ``{relative path: text}`` for the nginx site,
the two systemd units, the environment file and the EC2 user-data script; the
user-data script embeds the other four, so an instance needs nothing else.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from labelkit.settings import Settings, UploadLimits

TEMPLATES = Path(__file__).with_name("templates")

NGINX_SITE = "nginx/labelkit.conf"
DASHBOARD_UNIT = "systemd/labelkit-dashboard.service"
LISTENER_UNIT = "systemd/labelkit-listener.service"
ENV_FILE = "labelkit.env"
USER_DATA = "user-data.sh"


def _boto3_pin() -> str:
    try:
        return version("boto3")
    except PackageNotFoundError:  # pragma: no cover - boto3 is a runtime dependency
        return "1.44.8"


@dataclass
class HostConfig:
    """Everything the host templates need. Defaults describe the EC2 host."""

    env: dict[str, str] = field(default_factory=dict)
    stack: str = ""
    region: str = "us-east-1"
    source_url: str = ""
    source_ref: str = ""
    user: str = "labelkit"
    app_dir: str = "/opt/labelkit"
    data_dir: str = "/var/lib/labelkit"
    env_file: str = "/etc/labelkit/labelkit.env"
    dashboard_port: int = 8501
    enable_listener: bool = False
    max_upload_bytes: int = field(default_factory=lambda: Settings().max_upload_bytes)
    # nginx
    server_name: str = "_"
    listen_address: str = ""  # e.g. "127.0.0.1:" for a test; empty = all addresses
    http_port: int = 80
    https_port: int = 443
    ipv6: bool = True
    tls: bool = False
    ssl_certificate: str = "/etc/letsencrypt/live/labelkit/fullchain.pem"
    ssl_certificate_key: str = "/etc/letsencrypt/live/labelkit/privkey.pem"
    acme_root: str = "/var/www/letsencrypt"
    access_log: str = "/var/log/nginx/labelkit.access.log"
    error_log: str = "/var/log/nginx/labelkit.error.log"
    websocket_timeout: str = "86400s"
    # Behind a load balancer (the stack's WebTier=cluster): it ends TLS, so nginx serves plain
    # HTTP and passes on the scheme the load balancer saw, and the client's address from
    # X-Forwarded-For, both only from ``trusted_proxies`` (CIDRs: the VPC); and nginx keeps the
    # load balancer's idle connections open longer than the load balancer does.
    load_balancer: bool = False
    trusted_proxies: tuple[str, ...] = ()
    load_balancer_idle_timeout: int = 60

    def __post_init__(self) -> None:
        if self.load_balancer and self.tls:
            raise ValueError("behind a load balancer, TLS ends at the load balancer: no --tls")
        for cidr in self.trusted_proxies:
            ipaddress.ip_network(cidr)  # ValueError for anything but an address or a network

    @property
    def upstream(self) -> str:
        return f"127.0.0.1:{self.dashboard_port}"

    @property
    def keepalive_timeout(self) -> int:
        """Seconds nginx keeps an idle client connection: longer than the load balancer's own
        idle timeout, so it never sends a request on a connection nginx is closing (a 502)."""
        return self.load_balancer_idle_timeout + 5

    @property
    def upload_limits(self) -> UploadLimits:
        # The host's own LABELKIT_MAX_UPLOAD_BYTES, if the stack sets one, is what intake uses there.
        return UploadLimits.for_bytes(int(self.env.get("LABELKIT_MAX_UPLOAD_BYTES", self.max_upload_bytes)))

    @property
    def client_max_body_size(self) -> str:
        # Above Streamlit's limit by its own multipart allowance (see UploadLimits).
        return f"{self.upload_limits.proxy_mb}m"

    @property
    def streamlit_max_upload_mb(self) -> int:
        return self.upload_limits.streamlit_mb


def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # config files and shell, not HTML
    )


def host_env(cfg: HostConfig) -> dict[str, str]:
    """The environment file's variables: the stack's settings plus the host's data dir."""
    return {**cfg.env, "LABELKIT_DATA_DIR": cfg.data_dir}


def env_file_text(env: dict[str, str], *, stack: str = "") -> str:
    for key, value in env.items():
        if not key.replace("_", "").isalnum() or any(c in value for c in "\n\r\"'$` \\"):
            raise ValueError(f"cannot write {key}={value!r} to an environment file safely")
    return _environment().get_template("labelkit.env.j2").render(env=env, stack=stack)


def read_env_file(path: Path) -> dict[str, str]:
    """The non-empty ``LABELKIT_*`` lines of an environment file (such as the stack.env that
    the CloudFormation template's user data writes)."""
    env = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.startswith("LABELKIT_") and value.strip():
            env[key] = value.strip()
    return env


def render_host_files(cfg: HostConfig) -> dict[str, str]:
    """``{relative path: text}`` for every host file."""
    jinja = _environment()
    values = {
        "stack": cfg.stack,
        "region": cfg.region,
        "source_url": cfg.source_url,
        "source_ref": cfg.source_ref,
        "user": cfg.user,
        "app_dir": cfg.app_dir,
        "data_dir": cfg.data_dir,
        "env_file": cfg.env_file,
        "dashboard_port": cfg.dashboard_port,
        "enable_listener": cfg.enable_listener,
        "streamlit_max_upload_mb": cfg.streamlit_max_upload_mb,
        "client_max_body_size": cfg.client_max_body_size,
        "upstream": cfg.upstream,
        "server_name": cfg.server_name,
        "listen_address": cfg.listen_address,
        "http_port": cfg.http_port,
        "https_port": cfg.https_port,
        "ipv6": cfg.ipv6,
        "tls": cfg.tls,
        "ssl_certificate": cfg.ssl_certificate,
        "ssl_certificate_key": cfg.ssl_certificate_key,
        "acme_root": cfg.acme_root,
        "access_log": cfg.access_log,
        "error_log": cfg.error_log,
        "websocket_timeout": cfg.websocket_timeout,
        "load_balancer": cfg.load_balancer,
        "trusted_proxies": cfg.trusted_proxies,
        "keepalive_timeout": cfg.keepalive_timeout,
        "boto3_pin": _boto3_pin(),
    }
    files = {
        NGINX_SITE: jinja.get_template("nginx-site.conf.j2").render(values),
        DASHBOARD_UNIT: jinja.get_template("labelkit-dashboard.service.j2").render(values),
        LISTENER_UNIT: jinja.get_template("labelkit-listener.service.j2").render(values),
        ENV_FILE: env_file_text(host_env(cfg), stack=cfg.stack),
    }
    for name, text in files.items():
        if any(re.fullmatch(r"LABELKIT_\w+_EOF", line) for line in text.splitlines()):
            raise ValueError(f"{name} contains a heredoc delimiter")
    files[USER_DATA] = jinja.get_template("user-data.sh.j2").render(
        values,
        env_file_text=files[ENV_FILE],
        dashboard_unit=files[DASHBOARD_UNIT],
        listener_unit=files[LISTENER_UNIT],
        nginx_site=files[NGINX_SITE],
    )
    return files


def write_host_files(out_dir: Path, files: dict[str, str]) -> list[Path]:
    written = []
    for name, text in sorted(files.items()):
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if name == USER_DATA:
            path.chmod(0o755)
        written.append(path)
    return written
