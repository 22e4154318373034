"""A whole format-2 restore's roles: there before the first ``OWNER TO``, or named up front.

The backup's roles object (``<stem>.roles.json.zst``, checked against the
manifest) says which roles its owners and grants name. Missing ones are
created with ``--with-roles`` (never with a password), or named before
anything is restored. A partial restore goes into a database that has its
roles already: pg_restore names any it lacks.

A restoring role that is not a superuser (RDS's master user) must be a member
of every role it gives objects to: it joins the roles it created for the
restore, and leaves them at the end.
"""

from __future__ import annotations

import hashlib
import logging

import psycopg
import zstandard

from pgautodumper import roles
from pgautodumper.checked import listed_object
from pgautodumper.connection import ConnectionInfo, connect
from pgautodumper.errors import (
    ChecksumMismatchError,
    DatabaseError,
    DatabasePermissionError,
    MissingRolesError,
    redact,
)
from pgautodumper.manifest import ManifestV2, StoredObject

log = logging.getLogger(__name__)


def read(bucket: str, stored: StoredObject) -> roles.RoleSet:
    """The backup's roles object, checked against the manifest before it is trusted."""
    body = b"".join(listed_object(bucket, stored.key, "the roles object"))
    digest = hashlib.sha256(body).hexdigest()
    if len(body) != stored.stored_bytes or digest != stored.sha256:
        raise ChecksumMismatchError(
            f"checksum mismatch: the roles object {stored.key} is corrupt ({len(body)} bytes, "
            f"sha256 {digest}; the manifest records {stored.stored_bytes}, {stored.sha256})",
            hint="restore with --no-owner, or restore an older backup",
        )
    return roles.RoleSet.from_json(zstandard.ZstdDecompressor().decompress(body))


def needed(
    bucket: str, manifest: ManifestV2, target: ConnectionInfo, *, with_roles: bool
) -> roles.RoleSet:
    """The backup's roles; :class:`MissingRolesError` if the target lacks some and
    ``with_roles`` is not given."""
    assert manifest.roles is not None
    wanted = read(bucket, manifest.roles)
    with connect(target) as conn:
        absent = roles.missing(conn, wanted)
    if absent and not with_roles:
        raise MissingRolesError(
            f"the restore target {target.describe()} lacks role(s) {', '.join(absent)} "
            "that the backup's objects are owned by or granted to",
            hint="pass --with-roles to create them (without passwords), or --no-owner to "
            "restore without owners and grants",
        )
    return wanted


def create(target: ConnectionInfo, wanted: roles.RoleSet) -> roles.CreatedRoles:
    with connect(target, writable=True) as conn:
        try:
            return roles.create_missing(conn, wanted)
        except psycopg.Error as exc:
            raise DatabasePermissionError(
                f"cannot create the backup's roles on {target.describe()}: "
                f"{redact(str(exc), target.secret_values()).strip()}",
                hint="connect as a role with CREATEROLE (or create the roles named above "
                "yourself), or restore with --no-owner",
            ) from None


def leave(target: ConnectionInfo, assumed: list[str]) -> None:
    """Leave the roles joined for the restore; a failure is only a warning (it is restored)."""
    try:
        with connect(target, writable=True) as conn:
            roles.leave(conn, assumed)
    except (psycopg.Error, DatabaseError) as exc:
        log.warning(
            "could not leave role(s) %s joined for the restore: %s", ", ".join(assumed),
            redact(str(exc), target.secret_values()).strip(),
        )  # fmt: skip
