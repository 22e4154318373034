"""The Lambda packaging script: reproducible zips, and nothing the handlers import left out."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location(
    "package_lambdas", REPO / "scripts" / "package_lambdas.py"
)
assert spec and spec.loader
package_lambdas = importlib.util.module_from_spec(spec)
spec.loader.exec_module(package_lambdas)


def test_zip_is_byte_for_byte_reproducible(tmp_path):
    tree = tmp_path / "tree"
    (tree / "pkg").mkdir(parents=True)
    (tree / "pkg" / "b.py").write_text("B = 2\n")
    (tree / "pkg" / "a.py").write_text("A = 1\n")
    (tree / "pkg" / "__pycache__").mkdir()
    (tree / "pkg" / "__pycache__" / "a.cpython-312.pyc").write_bytes(b"junk")
    first, second = tmp_path / "1.zip", tmp_path / "2.zip"
    package_lambdas.write_zip(package_lambdas._files(tree, tree), first)
    (tree / "pkg" / "a.py").touch()  # a new mtime must not change the artifact
    package_lambdas.write_zip(reversed(list(package_lambdas._files(tree, tree))), second)
    assert first.read_bytes() == second.read_bytes()
    names = [i.filename for i in zipfile.ZipFile(first).infolist()]
    assert names == ["pkg/a.py", "pkg/b.py"]
    assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zipfile.ZipFile(first).infolist())


def test_requirements_come_from_pyproject_without_boto3():
    wanted = package_lambdas.requirements()
    names = " ".join(wanted)
    assert "psycopg" in names and "pydantic" in names and "aws-lambda-powertools" in names
    assert "boto3" not in names and "click" not in names and "zstandard" not in names


def test_handlers_import_only_what_the_zip_ships():
    """Import every handler in a fresh interpreter; each third-party module it loads must be
    shipped in the zip or provided by the Lambda runtime."""
    code = (
        "import sys, json\n"
        + "".join(f"import lambdas.{h}\n" for h in package_lambdas.HANDLERS)
        + "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = set(
        __import__("json").loads(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True,
                cwd=REPO,
            ).stdout
        )
    )  # fmt: skip
    third_party = loaded - set(sys.stdlib_module_names) - {"pgautodumper", "lambdas"}
    shipped = {
        "psycopg", "psycopg_binary", "pydantic", "pydantic_core", "annotated_types",
        "typing_extensions", "typing_inspection", "aws_lambda_powertools", "aws_xray_sdk",
        "wrapt",
    }  # fmt: skip
    runtime = {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3"}
    # botocore's optional import (it falls back without it); Cython's own bookkeeping module.
    runtime |= {"certifi", "cython_runtime"}
    assert not {m for m in third_party if not m.startswith("_")} - shipped - runtime
