"""sslmode verify-full against a server whose certificate a throwaway CA signed.

The CA comes the ways users give it: a PEM in Secrets Manager named by
``ssl_root_cert`` (self-managed servers), or the bundle the installation ships
(RDS and Aurora; here the bundle path points at the throwaway CA). A CA that
did not sign the certificate is refused by name; verify-full with no CA at all
is a usage error before anything connects.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from pgautodumper.local.emulator import Emulator
from pgautodumper.local.run import run_in
from pgautodumper.scratch import ThrowawayPostgres

# A server of its own: alongside the rest (tests/background.py).
pytestmark = pytest.mark.background

PASSWORD = f"tls-{secrets.token_hex(8)}"


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


@pytest.fixture(scope="module")
def certificates() -> Iterator[dict[str, Path]]:
    # Not under pytest's tmp_path: its parents are private to root, and the server,
    # which runs as postgres when we are root, must read its key and certificate.
    folder = Path(tempfile.mkdtemp(prefix="pgad-tls-"))
    try:
        yield _make_certificates(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _make_certificates(folder: Path) -> dict[str, Path]:
    ca_key, ca_cert = make_ca(folder, "throwaway-ca")
    _, other_ca = make_ca(folder, "some-other-ca")
    key, request, cert = folder / "server.key", folder / "server.csr", folder / "server.crt"
    subprocess.run(
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(request)],
        check=True, capture_output=True,
    )  # fmt: skip
    extensions = folder / "san.cnf"
    extensions.write_text("subjectAltName = IP:127.0.0.1\n")
    subprocess.run(
        ["openssl", "x509", "-req", "-in", str(request), "-CA", str(ca_cert), "-CAkey",
         str(ca_key), "-CAcreateserial", "-days", "2", "-extfile", str(extensions),
         "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    if os.geteuid() == 0:  # the server runs as postgres, and insists on a private key
        postgres = pwd.getpwnam("postgres")
        os.chmod(folder, 0o755)
        for path in (key, cert):
            os.chown(path, postgres.pw_uid, postgres.pw_gid)
    key.chmod(0o600)
    return {"ca": ca_cert, "other_ca": other_ca, "key": key, "cert": cert}


@pytest.fixture(scope="module")
def tls_server(certificates) -> Iterator[ThrowawayPostgres]:
    settings = {
        "ssl": "on",
        "ssl_cert_file": str(certificates["cert"]),
        "ssl_key_file": str(certificates["key"]),
    }
    with ThrowawayPostgres(settings=settings) as server:
        server.psql(f"CREATE ROLE tls_user LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
        server.psql("CREATE DATABASE app")
        server.psql("CREATE TABLE t AS SELECT generate_series(1, 100) AS id", dbname="app")
        yield server


def url(server: ThrowawayPostgres, sslmode: str) -> str:
    return server.url("tls_user", PASSWORD, "app") + f"?sslmode={sslmode}"


def ca_secret(path: Path) -> str:
    return boto3.client("secretsmanager").create_secret(
        Name=f"pgad/ca-{secrets.token_hex(4)}", SecretString=path.read_text()
    )["ARN"]


def test_verify_full_with_the_ca_from_secrets_manager(cli, tls_server, certificates, bucket):
    result = cli("backup", "--database-url", url(tls_server, "verify-full"), "--bucket", bucket,
                 "--ssl-root-cert", ca_secret(certificates["ca"]), "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tables"][0]["rows"] == 100


def test_a_ca_that_did_not_sign_the_certificate_is_refused(cli, tls_server, certificates, bucket):
    result = cli("backup", "--database-url", url(tls_server, "verify-full"), "--bucket", bucket,
                 "--ssl-root-cert", ca_secret(certificates["other_ca"]))  # fmt: skip
    assert result.returncode == 11, result.stderr
    assert "TLS to 127.0.0.1" in result.stderr and "certificate verify failed" in result.stderr


def test_the_shipped_bundle_is_the_default_ca(cli, tls_server, certificates, bucket):
    env = {"PGAUTODUMPER_RDS_CA_BUNDLE": str(certificates["ca"])}
    result = cli("backup", "--database-url", url(tls_server, "verify-full"), "--bucket", bucket,
                 env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_verify_full_without_any_ca_is_a_usage_error(cli, tls_server, bucket, tmp_path):
    # HOME without ~/.postgresql/root.crt: libpq has no CA of its own either
    env = {"PGAUTODUMPER_RDS_CA_BUNDLE": "/nonexistent/bundle.pem", "HOME": str(tmp_path)}
    result = cli("backup", "--database-url", url(tls_server, "verify-full"), "--bucket", bucket,
                 env=env)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "needs a CA certificate" in result.stderr and "ssl_root_cert" in result.stderr


def test_libpq_s_own_root_cert_is_respected(cli, tls_server, certificates, bucket, tmp_path):
    (tmp_path / ".postgresql").mkdir()
    shutil.copy(certificates["ca"], tmp_path / ".postgresql" / "root.crt")
    env = {"PGAUTODUMPER_RDS_CA_BUNDLE": "/nonexistent/bundle.pem", "HOME": str(tmp_path)}
    result = cli("backup", "--database-url", url(tls_server, "verify-full"), "--bucket", bucket,
                 env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_the_workflow_verifies_the_server_with_the_requested_ca(tls_server, certificates):
    with Emulator() as emu:
        ca = emu.client("secretsmanager").create_secret(
            Name="pgad/throwaway-ca", SecretString=certificates["ca"].read_text()
        )["ARN"]
        database = tls_server.url("tls_user", PASSWORD, "app")
        request = {"name": "tls", "verify": True, "sslmode": "verify-full", "ssl_root_cert": ca}
        result = run_in(emu, database, request)
    assert result.execution.status == "SUCCEEDED", result.execution.cause
    assert result.execution.output["verify"]["verdict"] == "passed"
    assert PASSWORD not in json.dumps(result.execution.history, default=str)
