import pytest

from pgautodumper import errors
from pgautodumper.connection import ConnectionInfo
from pgautodumper.manifest import parse_manifest
from pgautodumper.pgtools import find_tool, installed
from pgautodumper.secrets import parse_secret


def test_exit_codes_are_distinct_for_leaf_errors():
    leaves = [
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type)
        and issubclass(cls, errors.PgautodumperError)
        and not cls.__subclasses__()
    ]
    codes = [cls.exit_code for cls in leaves]
    assert len(codes) == len(set(codes)), sorted(codes)


def test_every_error_class_is_documented_in_the_module_docstring():
    for name, cls in vars(errors).items():
        if isinstance(cls, type) and issubclass(cls, errors.PgautodumperError):
            assert name in errors.__doc__, name


def test_redact_removes_passwords_from_urls_and_conninfo():
    text = "postgresql://u:hunter2@h/db failed; host=h password=hunter2 user=u"
    assert "hunter2" not in errors.redact(text)
    assert errors.redact("x s3cr3t y", ["s3cr3t"]) == "x *** y"


def test_url_password_goes_to_the_environment_not_params():
    info = ConnectionInfo.from_url(
        "postgresql://alice:p%40ss@db.example:6543/orders?sslmode=require"
    )
    assert "password" not in info.params
    env = info.libpq_env()
    assert env["PGPASSWORD"] == "p@ss" and env["PGHOST"] == "db.example"
    assert (
        env["PGPORT"] == "6543" and env["PGSSLMODE"] == "require" and env["PGDATABASE"] == "orders"
    )
    assert "p@ss" not in repr(info) and "p@ss" not in info.describe()


def test_malformed_secret_names_keys_not_values():
    with pytest.raises(errors.SecretMalformedError) as caught:
        parse_secret('{"username": "u", "password": "topsecret"}', arn="arn:s", version_id="v")
    assert "host" in str(caught.value) and "topsecret" not in str(caught.value)
    with pytest.raises(errors.SecretMalformedError, match="not JSON"):
        parse_secret("topsecret", arn="arn:s", version_id="v")


def test_manifest_of_unknown_version_is_refused():
    with pytest.raises(errors.ManifestError, match="format_version 2"):
        parse_manifest(b'{"format_version": 2}', "k")
    with pytest.raises(errors.ManifestError, match="incomplete or invalid"):
        parse_manifest(b'{"format_version": 1}', "k")


def test_the_installed_pg_dump_is_found_and_a_future_server_is_refused():
    tools = installed("pg_dump")
    assert tools, "PostgreSQL client tools are required for the tests"
    newest = tools[-1]
    assert find_tool("pg_dump", newest.major).major == newest.major
    with pytest.raises(errors.PgVersionMismatchError, match=f"PostgreSQL {newest.major + 1}"):
        find_tool("pg_dump", newest.major + 1)
