"""Host files: nginx site (nginx -t), systemd units, env file, user data (bash -n, shellcheck),
for the single host and for a cluster host behind the load balancer."""

from __future__ import annotations

import datetime
import http.client
import json
import re
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from infra_scripts import __main__ as cli
from infra_scripts.render import (
    DASHBOARD_UNIT,
    ENV_FILE,
    LISTENER_UNIT,
    NGINX_SITE,
    USER_DATA,
    HostConfig,
    render_host_files,
)
from labelkit.settings import Settings
from tests.e2e.conftest import free_port
from tests.infra.nginx_helpers import main_conf, nginx_running, nginx_test, render_site

ENV = {
    "LABELKIT_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/labelkit-demo-jobs",
    "LABELKIT_STORAGE_URL": "s3://labelkit-demo-123456789012-us-east-1",
    "LABELKIT_DATABASE_URL": "mysql+pymysql://labelkit@db.example:3306/labelkit",
    "LABELKIT_S3_NOTIFIES_QUEUE": "true",
}


def _cfg(**kw: object) -> HostConfig:
    cfg = HostConfig(env=dict(ENV), stack="demo", source_url="s3://labelkit-demo/deploy/labelkit-src.tar.gz")
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "labelkit.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_nginx_site_proxies_streamlit_with_websocket_upgrade() -> None:
    files = render_host_files(_cfg())
    site = files[NGINX_SITE]
    stream = site[site.index("location /_stcore/stream") :]
    stream = stream[: stream.index("}")]
    for line in (
        "proxy_pass http://127.0.0.1:8501;",
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        'proxy_set_header Connection "upgrade";',
        "proxy_read_timeout 86400s;",
    ):
        assert line in stream
    # The Host header goes through as sent (with its port: Streamlit's WebSocket origin check)
    assert site.count("proxy_set_header Host $http_host;") == 2 and "$host;" not in site
    # nginx lets through more than Streamlit's server takes, which takes more than the
    # widget, which holds a file of exactly Labelkit's limit (20 MiB -> 21 MB, 22 MiB, 23 MiB)
    assert Settings().max_upload_bytes == 20 * 2**20
    assert "client_max_body_size 23m;" in site
    assert re.search(r"--server.maxUploadSize 22\b", files[DASHBOARD_UNIT])
    assert "listen 443" not in site.replace("`listen 443 ssl`", "")  # TLS off: only a hint
    bigger = render_host_files(_cfg(max_upload_bytes=50 * 2**20))  # 52.4 MB -> 53, 54, 55
    assert bigger[NGINX_SITE].count("client_max_body_size 55m;") == 1
    assert re.search(r"--server.maxUploadSize 54\b", bigger[DASHBOARD_UNIT])
    # the host's own LABELKIT_MAX_UPLOAD_BYTES wins over the deploying machine's default
    own = render_host_files(_cfg(env={**ENV, "LABELKIT_MAX_UPLOAD_BYTES": str(10**7)}))
    assert own[NGINX_SITE].count("client_max_body_size 12m;") == 1


def test_nginx_accepts_the_site(tmp_path: Path) -> None:
    prefix = tmp_path / "nginx"
    conf = render_site(prefix, _cfg(listen_address="127.0.0.1:", http_port=free_port(), ipv6=False))
    result = nginx_test(conf, prefix)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_accepts_the_tls_site(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    prefix = tmp_path / "nginx"
    cfg = _cfg(
        listen_address="127.0.0.1:",
        http_port=free_port(),
        https_port=free_port(),
        ipv6=False,
        tls=True,
        ssl_certificate=str(cert),
        ssl_certificate_key=str(key),
        acme_root=str(tmp_path / "acme"),
    )
    conf = render_site(prefix, cfg)
    site = (prefix / "labelkit.conf").read_text()
    assert f"ssl_certificate {cert};" in site and "return 301 https://$host$request_uri;" in site
    result = nginx_test(conf, prefix)
    assert result.returncode == 0, result.stderr


def test_systemd_units() -> None:
    files = render_host_files(_cfg())
    dashboard, listener = files[DASHBOARD_UNIT], files[LISTENER_UNIT]
    # The ASGI app: the session cookie routes, /download/ and the security headers (serving
    # streamlit_app.py directly would lose them on EC2).
    assert (
        "ExecStart=/opt/labelkit/.venv/bin/python -m streamlit run dashboard/asgi.py "
        "--server.address 127.0.0.1 --server.port 8501 --server.headless true" in dashboard
    )
    assert "ExecStart=/opt/labelkit/.venv/bin/python -m sqs_listener --no-migrate" in listener.splitlines()
    for unit in (dashboard, listener):
        for line in (
            "Restart=on-failure",
            "EnvironmentFile=/etc/labelkit/labelkit.env",
            "User=labelkit",
            "NoNewPrivileges=true",
            "ProtectSystem=strict",
            "ReadWritePaths=/var/lib/labelkit",
        ):
            assert line in unit.splitlines(), line


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_units_parse(tmp_path: Path) -> None:
    files = render_host_files(_cfg())
    paths = []
    for name in (DASHBOARD_UNIT, LISTENER_UNIT):
        path = tmp_path / Path(name).name
        path.write_text(files[name])
        paths.append(str(path))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *paths], capture_output=True, text=True, timeout=60
    )
    # Paths that exist only on the EC2 host are reported; syntax errors are not allowed.
    problems = [
        line
        for line in result.stderr.splitlines()
        if "Unknown key" in line or "Unknown section" in line or "Failed to parse" in line
    ]
    assert problems == []


def test_env_file_is_read_by_settings(tmp_path: Path) -> None:
    text = render_host_files(_cfg())[ENV_FILE]
    path = tmp_path / "labelkit.env"
    path.write_text(text)
    settings = Settings(_env_file=path)
    assert settings.queue_url == ENV["LABELKIT_QUEUE_URL"]
    assert settings.s3_notifies_queue is True
    assert settings.data_dir == Path("/var/lib/labelkit")


def test_user_data_embeds_everything_and_passes_bash_n(tmp_path: Path) -> None:
    files = render_host_files(_cfg())
    script = files[USER_DATA]
    for name in (ENV_FILE, DASHBOARD_UNIT, LISTENER_UNIT, NGINX_SITE):
        assert files[name] in script
    assert "systemctl enable labelkit-dashboard.service" in script
    assert "ENABLE_LISTENER='no'" in script
    assert "ENABLE_LISTENER='yes'" in render_host_files(_cfg(enable_listener=True))[USER_DATA]
    git = render_host_files(_cfg(source_url="https://github.com/example/labelkit.git"))[USER_DATA]
    path = tmp_path / "user-data.sh"
    for text in (script, git):
        path.write_text(text)
        result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    assert len(script.encode()) < 16 * 1024  # EC2's user-data limit


@pytest.mark.skipif(
    shutil.which("shellcheck") is None and shutil.which("apt-get") is None,
    reason="shellcheck cannot be installed here",
)
def test_user_data_passes_shellcheck(tmp_path: Path) -> None:
    # Not skipped where apt-get exists: install shellcheck (scripts/system-deps.sh) instead.
    assert shutil.which("shellcheck"), "install shellcheck: apt-get install -y shellcheck"
    path = tmp_path / "user-data.sh"
    path.write_text(render_host_files(_cfg())[USER_DATA])
    result = subprocess.run(["shellcheck", "--severity=style", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_render_cli_writes_all_files(tmp_path: Path) -> None:
    out = tmp_path / "host"
    assert cli.main(["render", "--out", str(out), "--no-ipv6", "--http-port", "8080"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
        [DASHBOARD_UNIT, ENV_FILE, LISTENER_UNIT, NGINX_SITE, USER_DATA]
    )
    assert "listen 8080 default_server;" in (out / NGINX_SITE).read_text()
    assert (out / USER_DATA).stat().st_mode & 0o111
    assert cli.main(["render", "--out", str(out), "--stack", "missing"]) == 1


def _user_data_sub(resource: str) -> list[Any]:
    """The ``Fn::Sub`` of a resource's user data in the CloudFormation template: [text, values]."""
    from cfnlint.decode.cfn_yaml import loads

    from infra_scripts.cloudformation import TEMPLATE

    props = loads(TEMPLATE.read_text(encoding="utf-8"))["Resources"][resource]["Properties"]
    if resource == "LaunchTemplate":
        props = props["LaunchTemplateData"]
    return list(props["UserData"]["Fn::Base64"]["Fn::Sub"])


def _template_user_data(resource: str = "Host") -> str:
    """The stage-1 shell script of the CloudFormation template's user data (the single host's,
    or the cluster's launch template's), with every ``${...}`` substituted by a plausible value."""
    text = re.sub(r"\$\{[A-Za-z0-9:.]+\}", "value", str(_user_data_sub(resource)[0]))
    script = text[text.index("#!/bin/bash") : text.index("--==LABELKIT==--")]
    return script


@pytest.mark.parametrize("resource", ["Host", "LaunchTemplate"])
def test_template_user_data_passes_bash_n_and_shellcheck(tmp_path: Path, resource: str) -> None:
    script = _template_user_data(resource)
    assert "infra_scripts render --out /run/labelkit-host" in script
    path = tmp_path / "stage1.sh"
    path.write_text(script)
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert shutil.which("shellcheck"), "install shellcheck: apt-get install -y shellcheck"
    result = subprocess.run(["shellcheck", "--severity=style", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_a_cluster_host_boots_like_the_single_host_up_to_rendering() -> None:
    # GIVEN the two copies of the stage-1 user data (CloudFormation YAML has no way to share one)
    host, cluster = _user_data_sub("Host"), _user_data_sub("LaunchTemplate")
    split = "cd /opt/labelkit/src\n"
    # THEN they are the same up to the render (settings, packages, source, venv), with the same values
    assert host[0].split(split)[0] == cluster[0].split(split)[0]
    assert host[1] == cluster[1]
    # AND after it the cluster host renders for the load balancer and signals once healthy
    single_tail, cluster_tail = host[0].split(split)[1], cluster[0].split(split)[1]
    assert "exec bash /run/labelkit-host/user-data.sh --source-in-place" in single_tail
    assert "--load-balancer" not in single_tail and "signal-resource" not in single_tail
    for part in (
        "--load-balancer --load-balancer-idle-timeout ${LoadBalancerIdleTimeout}",
        'set -- "$@" --trusted-proxy "$cidr"',
        "bash /run/labelkit-host/user-data.sh --source-in-place || status=FAILURE",
        "--logical-resource-id WebHosts",
    ):
        assert part in cluster_tail, part


def _cluster_host_files(tmp_path: Path) -> Path:
    """What a cluster host renders at boot: the CLI with the launch template's flags."""
    env_file = tmp_path / "stack.env"
    env_file.write_text(
        "LABELKIT_STACK=labelkit-demo\nLABELKIT_AWS_REGION=eu-west-1\n"
        f"LABELKIT_QUEUE_URL={ENV['LABELKIT_QUEUE_URL']}\nLABELKIT_DATABASE_URL={ENV['LABELKIT_DATABASE_URL']}\n"
    )
    out = tmp_path / "host"
    args = ["render", "--out", str(out), "--env-file", str(env_file), "--source-url", "s3://b/src.tar.gz"]
    args += [
        "--server-name",
        "_",
        "--enable-listener",
        "--load-balancer",
        "--load-balancer-idle-timeout",
        "300",
    ]
    args += ["--trusted-proxy", "172.31.0.0/16", "--trusted-proxy", "10.1.0.0/16"]
    assert cli.main(args) == 0
    return out


def test_the_user_data_of_a_cluster_host_passes_nginx_t(tmp_path: Path) -> None:
    # GIVEN the user data a cluster host renders at boot
    user_data = (_cluster_host_files(tmp_path) / USER_DATA).read_text()
    # WHEN its nginx site (as the script writes it) is checked by nginx, logs moved to a temp dir
    site = user_data.split("<<'LABELKIT_NGINX_EOF'\n", 1)[1].split("LABELKIT_NGINX_EOF", 1)[0]
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    (prefix / "site.conf").write_text(site.replace("/var/log/nginx/", f"{prefix}/logs/"))
    result = nginx_test(main_conf(prefix, prefix / "site.conf"), prefix)
    # THEN nginx accepts it
    assert result.returncode == 0, result.stderr
    # AND it serves plain HTTP to the load balancer, trusting the VPC's ranges for the client and
    # scheme, and outlives the load balancer's idle connections
    for line in (
        "listen 80 default_server;",
        "set_real_ip_from 172.31.0.0/16;",
        "set_real_ip_from 10.1.0.0/16;",
        "real_ip_header X-Forwarded-For;",
        "real_ip_recursive on;",
        "keepalive_timeout 305s;",
        "proxy_set_header X-Forwarded-Proto $labelkit_forwarded_proto;",
    ):
        assert line in site, line
    assert "ssl" not in site.replace("ssl_", "") and "listen 443" not in site
    # AND the rest of the script is a valid host bootstrap (the listener on: Worker=ec2)
    assert "ENABLE_LISTENER='yes'" in user_data and "readonly AWS_REGION='eu-west-1'" in user_data
    path = tmp_path / "user-data.sh"
    path.write_text(user_data)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True).returncode == 0
    assert shutil.which("shellcheck"), "install shellcheck: apt-get install -y shellcheck"
    result = subprocess.run(["shellcheck", "--severity=style", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_render_refuses_a_load_balancer_site_without_its_trusted_range_or_with_tls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "host")
    assert cli.main(["render", "--out", out, "--load-balancer"]) == 2
    assert "--load-balancer needs --trusted-proxy" in capsys.readouterr().err
    assert (
        cli.main(["render", "--out", out, "--load-balancer", "--trusted-proxy", "10.0.0.0/8", "--tls"]) == 2
    )
    assert "TLS ends at the load balancer" in capsys.readouterr().err
    assert cli.main(["render", "--out", out, "--load-balancer", "--trusted-proxy", "not-a-range"]) == 2
    assert not (tmp_path / "host").exists()


class _EchoForwarded(BaseHTTPRequestHandler):
    """An upstream that answers with the forwarding headers it received, as JSON."""

    def do_GET(self) -> None:
        names = ("X-Real-IP", "X-Forwarded-For", "X-Forwarded-Proto")
        body = json.dumps({n: self.headers.get(n) for n in names}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("trusted", "client", "scheme"),
    [
        ("127.0.0.0/8", "203.0.113.9", "https"),  # the load balancer's own address range
        ("10.0.0.0/8", "127.0.0.1", "http"),  # someone else: their headers are not believed
    ],
)
def test_a_cluster_host_takes_the_client_and_scheme_from_the_load_balancer_only(
    tmp_path: Path, trusted: str, client: str, scheme: str
) -> None:
    # GIVEN the cluster site in front of an upstream that echoes the forwarding headers, with
    # the load balancer's range trusted (the test connects from 127.0.0.1) or another range
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoForwarded)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = free_port()
    cfg = HostConfig(
        listen_address="127.0.0.1:",
        http_port=port,
        ipv6=False,
        dashboard_port=server.server_address[1],
        load_balancer=True,
        trusted_proxies=(trusted,),
    )
    prefix = tmp_path / "nginx"
    conf = render_site(prefix, cfg)
    try:
        with nginx_running(conf, prefix, port):
            # WHEN a request arrives as the load balancer sends it: the address a browser wrote
            # itself first, the one the load balancer saw last, and the scheme it was reached by
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request(
                "GET",
                "/",
                headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9", "X-Forwarded-Proto": "https"},
            )
            got = json.loads(conn.getresponse().read())
            conn.close()
    finally:
        server.shutdown()
        server.server_close()
    # THEN the dashboard is told the real client and scheme only when the request came from the
    # trusted range; the address the browser wrote itself is never the client
    assert got["X-Real-IP"] == client
    assert got["X-Forwarded-For"].split(", ")[-1] == client
    assert got["X-Forwarded-Proto"] == scheme


def test_render_from_the_stack_env_file_of_the_template(tmp_path: Path) -> None:
    # GIVEN the stack.env the template's user data writes (unset values are empty lines)
    env_file = tmp_path / "stack.env"
    env_file.write_text(
        "LABELKIT_STACK=labelkit-demo\nLABELKIT_AWS_REGION=eu-west-1\n"
        f"LABELKIT_QUEUE_URL={ENV['LABELKIT_QUEUE_URL']}\nLABELKIT_DATABASE_SECRET_ARN=\n"
    )
    out = tmp_path / "host"
    # WHEN the host renders its files from it
    args = ["render", "--out", str(out), "--env-file", str(env_file), "--source-url", "s3://b/src.tar.gz"]
    assert cli.main([*args, "--enable-listener"]) == 0
    # THEN the settings, the region and the source are in them, and empty values are not
    env = (out / ENV_FILE).read_text()
    assert f"LABELKIT_QUEUE_URL={ENV['LABELKIT_QUEUE_URL']}" in env
    assert "LABELKIT_DATABASE_SECRET_ARN=" not in env
    user_data = (out / USER_DATA).read_text()
    assert "readonly AWS_REGION='eu-west-1'" in user_data
    assert "readonly SOURCE_URL='s3://b/src.tar.gz'" in user_data
    assert "ENABLE_LISTENER='yes'" in user_data
    assert 'if [ "${1:-}" = --source-in-place ]' in user_data
