"""LookupSecret: the secret ARN becomes a ConnectionTarget pinned to one secret version."""

from __future__ import annotations

import boto3
import pytest

from lambdas import lookup_secret
from pgautodumper.contract import ConnectionTarget
from pgautodumper.errors import SecretMalformedError, SecretNotFoundError
from tests.conftest import BACKUP_PASSWORD


def request(secret_arn: str) -> dict:
    return {"request": {"name": "app", "secret_arn": secret_arn, "bucket": "unused-bucket"}}


def test_returns_the_target_with_the_version_pinned(leaks, make_secret):
    arn = make_secret(
        {"host": "db.internal", "port": 6543, "username": "backup",
         "password": BACKUP_PASSWORD, "dbname": "app"}
    )  # fmt: skip
    version = boto3.client("secretsmanager").get_secret_value(SecretId=arn)["VersionId"]

    output = leaks.invoke(lookup_secret.handler, request(arn))

    target = ConnectionTarget.model_validate(output)
    assert (target.host, target.port, target.dbname, target.user) == (
        "db.internal", 6543, "app", "backup",
    )  # fmt: skip
    assert target.secret_arn == arn
    assert target.secret_version_id == version
    assert "password" not in output


def test_rotation_after_lookup_does_not_change_the_pinned_version(leaks, make_secret):
    arn = make_secret({"host": "h", "username": "u", "password": BACKUP_PASSWORD})
    target = ConnectionTarget.model_validate(leaks.invoke(lookup_secret.handler, request(arn)))
    rotated = leaks.forbid("rotated-" + BACKUP_PASSWORD[::-1])
    boto3.client("secretsmanager").put_secret_value(
        SecretId=arn, SecretString=f'{{"host": "h", "username": "u", "password": "{rotated}"}}'
    )

    from pgautodumper.secrets import fetch_secret

    pinned = fetch_secret(target.secret_arn, target.secret_version_id)
    assert pinned.password.get_secret_value() == BACKUP_PASSWORD
    assert fetch_secret(arn).password.get_secret_value() == rotated


def test_missing_secret_is_secret_not_found(leaks):
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:pgad/none-AbCdEf"
    with pytest.raises(SecretNotFoundError, match="not found") as info:
        leaks.invoke(lookup_secret.handler, request(arn))
    assert type(info.value).__name__ == "SecretNotFoundError"


@pytest.mark.parametrize(
    ("document", "missing"),
    [
        ('{"host": "h", "username": "u"}', "password"),
        ('{"username": "u", "password": "%s"}', "host"),
        ('{"host": "h", "password": "%s"}', "username"),
    ],
)
def test_malformed_secret_names_missing_keys_never_values(leaks, make_secret, document, missing):
    arn = make_secret(document.replace("%s", BACKUP_PASSWORD))
    with pytest.raises(SecretMalformedError) as info:
        leaks.invoke(lookup_secret.handler, request(arn))
    assert missing in str(info.value)
    assert BACKUP_PASSWORD not in str(info.value)


def test_secret_that_is_not_json_is_malformed(leaks, make_secret):
    arn = make_secret(f"postgresql://u:{BACKUP_PASSWORD}@h/db")
    with pytest.raises(SecretMalformedError, match="not JSON"):
        leaks.invoke(lookup_secret.handler, request(arn))
