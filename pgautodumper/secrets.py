"""Database credentials from AWS Secrets Manager (the RDS secret format).

The secret's JSON holds ``host``, ``port``, ``username``, ``password`` and
``dbname``. A run pins the secret's ``VersionId`` so every step reads the same
credentials, even if rotation happens mid-run. Errors name missing keys,
never values.
"""

from __future__ import annotations

import json

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, SecretStr

from pgautodumper import aws
from pgautodumper.connection import ConnectionInfo
from pgautodumper.contract import ConnectionTarget
from pgautodumper.errors import (
    SecretAccessDeniedError,
    SecretError,
    SecretMalformedError,
    SecretNotFoundError,
)

REQUIRED_KEYS = ("host", "username", "password")


class DatabaseSecret(BaseModel):
    """A parsed RDS-format secret; ``version_id`` is the version that was read."""

    arn: str
    version_id: str
    host: str
    port: int = 5432
    username: str
    password: SecretStr
    dbname: str = "postgres"

    def connection(self, **extra: str) -> ConnectionInfo:
        params = {"host": self.host, "port": str(self.port), "dbname": self.dbname}
        return ConnectionInfo(
            params={**params, "user": self.username, **extra}, password=self.password
        )


def parse_secret(secret_string: str, *, arn: str, version_id: str) -> DatabaseSecret:
    try:
        document = json.loads(secret_string)
    except ValueError:
        raise SecretMalformedError(
            f"secret {arn} is not JSON",
            hint="store the RDS format: host, port, username, password, dbname",
        ) from None
    if not isinstance(document, dict):
        raise SecretMalformedError(f"secret {arn} is not a JSON object")
    missing = [k for k in REQUIRED_KEYS if not document.get(k)]
    if missing:
        raise SecretMalformedError(
            f"secret {arn} lacks required key(s): {', '.join(missing)}",
            hint="store the RDS format: host, port, username, password, dbname",
        )
    port = document.get("port", 5432)
    if not str(port).isdigit():
        raise SecretMalformedError(f"secret {arn} has a non-numeric 'port'")
    return DatabaseSecret(
        arn=arn,
        version_id=version_id,
        host=str(document["host"]),
        port=int(port),
        username=str(document["username"]),
        password=SecretStr(str(document["password"])),
        dbname=str(document.get("dbname") or "postgres"),
    )


def fetch_secret(secret_arn: str, version_id: str | None = None) -> DatabaseSecret:
    """Read and validate a database secret, optionally at a pinned version."""
    request = {"SecretId": secret_arn}
    if version_id:
        request["VersionId"] = version_id
    try:
        response = aws.client("secretsmanager").get_secret_value(**request)
    except ClientError as exc:
        code = aws.error_code(exc)
        if code == "ResourceNotFoundException":
            raise SecretNotFoundError(
                f"secret {secret_arn} not found"
                + (f" at version {version_id}" if version_id else ""),
                hint="check the ARN and the region (AWS_REGION)",
            ) from None
        if code in ("AccessDeniedException", "DecryptionFailure"):
            raise SecretAccessDeniedError(
                f"access denied reading secret {secret_arn} ({code})",
                hint="grant secretsmanager:GetSecretValue (and kms:Decrypt) to this role",
            ) from None
        raise SecretError(f"cannot read secret {secret_arn}: {code}") from None
    except BotoCoreError as exc:
        raise SecretError(f"cannot reach Secrets Manager for {secret_arn}: {exc}") from None
    if "SecretString" not in response:
        raise SecretMalformedError(f"secret {secret_arn} has no SecretString")
    return parse_secret(
        response["SecretString"], arn=response["ARN"], version_id=response["VersionId"]
    )


def lookup_target(secret_arn: str) -> ConnectionTarget:
    """LookupSecret: where the database is, with the secret's version pinned for the run.

    The password is read (so a malformed secret fails now, naming its missing
    keys) but never leaves this function.
    """
    secret = fetch_secret(secret_arn)
    return ConnectionTarget(
        secret_arn=secret.arn,
        secret_version_id=secret.version_id,
        host=secret.host,
        port=secret.port,
        dbname=secret.dbname,
        user=secret.username,
    )
