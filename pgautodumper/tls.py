"""Which certificate authority libpq trusts for the database's certificate.

``sslmode`` decides what TLS protects against. ``require`` (the default)
encrypts the connection but accepts any server certificate: it stops passive
eavesdropping, not an active man in the middle who answers in the server's
place. ``verify-full`` also checks that a trusted CA signed the certificate
and that it names the host: recommended, and it works out of the box for RDS
and Aurora endpoints, whose CAs come in the RDS global bundle that the Lambda
zip and the task image ship. A self-managed server names its own CA: a PEM
stored in Secrets Manager or in SSM Parameter Store, whose ARN the request
gives as ``ssl_root_cert``; it is written to a private temporary file, since
libpq reads ``sslrootcert`` from a file.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from pgautodumper import aws
from pgautodumper.errors import SecretAccessDeniedError, SecretNotFoundError, UsageError

VERIFYING = ("verify-ca", "verify-full")
BUNDLE_ENV = "PGAUTODUMPER_RDS_CA_BUNDLE"
# Where `make package` (Lambda zip) and task_image/Dockerfile put the bundle
# from https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem.
BUNDLE_PATHS = (
    Path(__file__).resolve().parent / "certs" / "rds-global-bundle.pem",
    Path("/usr/local/share/pgautodumper/rds-global-bundle.pem"),
)


def rds_bundle() -> Path | None:
    """The RDS/Aurora CA bundle shipped with this installation, if any."""
    configured = os.environ.get(BUNDLE_ENV)
    candidates = (Path(configured),) if configured else BUNDLE_PATHS
    return next((path for path in candidates if path.is_file()), None)


def fetch_pem(arn: str) -> str:
    """A PEM from a Secrets Manager secret or an SSM parameter (SecureString or String)."""
    try:
        if ":ssm:" in arn:
            name = arn.split(":parameter", 1)[-1] if arn.startswith("arn:") else arn
            response = aws.client("ssm").get_parameter(Name=name, WithDecryption=True)
            pem = response["Parameter"]["Value"]
        else:
            pem = aws.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    except ClientError as exc:
        code = aws.error_code(exc)
        if code in ("ResourceNotFoundException", "ParameterNotFound"):
            raise SecretNotFoundError(
                f"the CA certificate {arn} (ssl_root_cert) does not exist",
                hint="check the ARN and its region",
            ) from None
        raise SecretAccessDeniedError(
            f"cannot read the CA certificate {arn} (ssl_root_cert): {code}",
            hint="grant secretsmanager:GetSecretValue or ssm:GetParameter (and kms:Decrypt)",
        ) from None
    except BotoCoreError as exc:
        raise SecretAccessDeniedError(f"cannot read the CA certificate {arn}: {exc}") from None
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise UsageError(
            f"{arn} (ssl_root_cert) holds no PEM certificate",
            hint="store the CA certificate(s) in PEM form, -----BEGIN CERTIFICATE----- included",
        )
    return pem


@functools.cache
def _written(arn: str) -> str:
    """The PEM of ``arn`` in a private file (once per process: the path is all libpq needs)."""
    descriptor, path = tempfile.mkstemp(prefix="pgad-ca-", suffix=".pem")
    with os.fdopen(descriptor, "w") as file:
        file.write(fetch_pem(arn))
    return path


def libpq_has_a_root_cert(params: Mapping[str, str]) -> bool:
    """Whether libpq was already told which CA to trust (URL, PGSSLROOTCERT or ~/.postgresql)."""
    return (
        "sslrootcert" in params
        or bool(os.environ.get("PGSSLROOTCERT"))
        or (Path.home() / ".postgresql" / "root.crt").is_file()
    )


def root_cert_params(
    sslmode: str | None, ssl_root_cert: str | None, params: Mapping[str, str] | None = None
) -> dict[str, str]:
    """libpq's ``sslrootcert`` for a verifying ``sslmode``.

    The CA named by ``ssl_root_cert`` wins; then whatever libpq is already configured
    with; then the shipped RDS bundle.
    """
    if sslmode not in VERIFYING:
        return {}
    if ssl_root_cert:
        return {"sslrootcert": _written(ssl_root_cert)}
    if libpq_has_a_root_cert(params or {}):
        return {}
    bundle = rds_bundle()
    if bundle is None:
        raise UsageError(
            f"sslmode {sslmode} needs a CA certificate, and this installation has no RDS CA bundle",
            hint="set ssl_root_cert to the ARN of a Secrets Manager secret or SSM parameter "
            f"holding your CA's PEM, PGSSLROOTCERT to a PEM file, or {BUNDLE_ENV} to a bundle",
        )
    return {"sslrootcert": str(bundle)}
