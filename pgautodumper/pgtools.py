"""Finding the PostgreSQL client tools that can handle a given server.

pg_dump can dump servers of its own major version and older; a pg_dump older
than the server refuses ("server version mismatch") — and a pipeline that
ignores that exit code stores an empty backup. So the choice is made before
anything is uploaded, and a missing tool is a named error.
"""

from __future__ import annotations

import functools
import glob
import re
import shutil
import subprocess
from pathlib import Path

from pydantic import BaseModel

from pgautodumper.errors import PgVersionMismatchError

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


class PgTool(BaseModel):
    name: str
    path: Path
    version: str
    major: int


def server_major(server_version_num: int) -> int:
    return server_version_num // 10000


def leave_out_flags(*, no_owner: bool, no_tablespaces: bool) -> list[str]:
    """pg_restore's flags for what a restore or an export leaves out."""
    flags = ["--no-owner", "--no-privileges"] if no_owner else []
    return [*flags, "--no-tablespaces"] if no_tablespaces else flags


@functools.cache
def _probe(path: str) -> PgTool | None:
    try:
        output = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except OSError:
        return None
    match = _VERSION.search(output)
    if not match:
        return None
    version = match.group(0).split()[-1]
    return PgTool(name=Path(path).name, path=Path(path), version=version, major=int(match[1]))


def installed(name: str) -> list[PgTool]:
    """Every distinct major of ``name``; PATH wins over /usr/lib/postgresql/*/bin."""
    on_path = shutil.which(name)
    paths = [on_path] if on_path else []
    paths += sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    by_major: dict[int, PgTool] = {}
    for path in paths:
        tool = _probe(path)
        if tool and tool.major not in by_major:
            by_major[tool.major] = tool
    return [by_major[m] for m in sorted(by_major)]


def find_tool(name: str, major: int, *, pinned: int | None = None) -> PgTool:
    """The oldest installed ``name`` whose major is >= ``major`` (or exactly ``pinned``)."""
    tools = installed(name)
    usable = [t for t in tools if t.major >= major and (pinned is None or t.major == pinned)]
    if usable:
        return usable[0]
    found = ", ".join(f"{t.major} ({t.path})" for t in tools) or "none"
    wanted = f"exactly {pinned}" if pinned is not None else f"{major} or newer"
    raise PgVersionMismatchError(
        f"no {name} can handle PostgreSQL {major}: need major {wanted}, installed: {found}",
        hint=f"install postgresql-client-{max(major, pinned or 0)} "
        "(or add its bin directory to PATH)",
    )
