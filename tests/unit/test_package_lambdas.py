"""The Lambda packaging script: reproducible zips, nothing the handlers import left out,
and an AWS SDK that accepts every S3 parameter the code sends.

The Lambda runtime's bundled boto3 is older than what the code needs (conditional
writes, request checksums on an Object Lock bucket), so the zip ships a pinned
botocore (scripts/lambda-constraints.txt). The last tests install that pin the way
the build does and validate the package's S3 calls against *its* service model.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pgautodumper import tls
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


PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_the_rds_bundle_ships_where_pgautodumper_tls_looks(tmp_path, monkeypatch):
    bundle = tmp_path / "global-bundle.pem"
    bundle.write_bytes(PEM)
    monkeypatch.setenv("RDS_CA_BUNDLE", str(bundle))
    body, entry = package_lambdas.rds_bundle()
    assert body == PEM
    # pgautodumper/tls.py's first candidate, relative to the zip's root
    assert REPO / entry == tls.BUNDLE_PATHS[0]


@pytest.mark.parametrize(
    ("content", "message"), [(None, "cannot get the RDS CA bundle"), (b"<html>", "not a PEM")]
)
def test_a_missing_or_wrong_rds_bundle_stops_the_build(tmp_path, monkeypatch, content, message):
    bundle = tmp_path / "global-bundle.pem"
    if content is not None:
        bundle.write_bytes(content)
    monkeypatch.setenv("RDS_CA_BUNDLE", str(bundle))
    with pytest.raises(SystemExit, match=message):
        package_lambdas.rds_bundle()


def test_requirements_ship_the_aws_sdk_pinned_to_a_recent_botocore():
    wanted = package_lambdas.requirements()
    names = " ".join(wanted)
    assert "psycopg" in names and "pydantic" in names and "aws-lambda-powertools" in names
    assert "boto3" in names, "the zip ships its own boto3 (the runtime's is too old)"
    assert "click" not in names and "zstandard" not in names
    pins = dict(
        line.split("==", 1)
        for line in package_lambdas.CONSTRAINTS.read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    botocore = tuple(int(part) for part in pins["botocore"].split(".")[:3])
    assert botocore >= package_lambdas.MIN_BOTOCORE >= (1, 36, 0)
    assert pins["boto3"].split(".")[1:] == pins["botocore"].split(".")[1:], "boto3 matches"


def test_the_build_refuses_an_old_botocore(tmp_path):
    (tmp_path / "botocore-1.35.99.dist-info").mkdir()
    with pytest.raises(SystemExit, match=r"older than 1\.36\.0"):
        package_lambdas.check_botocore(tmp_path)
    (tmp_path / "botocore-1.35.99.dist-info").rmdir()
    (tmp_path / "botocore-1.36.0.dist-info").mkdir()
    package_lambdas.check_botocore(tmp_path)


def test_handlers_are_the_terraform_functions():
    import hcl2

    with (REPO / "terraform" / "lambda.tf").open() as handle:
        parsed = hcl2.load(handle)
    functions = next(block["functions"] for block in parsed["locals"] if "functions" in block)
    assert sorted(package_lambdas.HANDLERS) == sorted(functions)
    for handler in package_lambdas.HANDLERS:
        assert (REPO / "lambdas" / f"{handler}.py").exists(), handler


def test_handlers_import_only_what_the_zip_ships():
    """Import every handler in a fresh interpreter; each third-party module it loads must be
    shipped in the zip."""
    code = (
        "import sys, json\n"
        + "".join(f"import lambdas.{h}\n" for h in package_lambdas.HANDLERS)
        + "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = set(
        json.loads(
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
        "wrapt", "boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3",
    }  # fmt: skip
    # botocore's optional import (it falls back without it); Cython's own bookkeeping module.
    optional = {"certifi", "cython_runtime"}
    assert not {m for m in third_party if not m.startswith("_")} - shipped - optional


################################################################################
# The shipped botocore accepts what the code sends
################################################################################

S3_METHODS = {
    "put_object", "get_object", "head_object", "delete_object", "delete_objects",
    "create_multipart_upload", "upload_part", "complete_multipart_upload",
    "abort_multipart_upload", "list_objects_v2", "list_object_versions",
    "get_object_retention", "copy_object",
}  # fmt: skip

# The conditional writes and checksums, with values as the code passes them (some reach
# put_object through a condition dict, which a keyword scan cannot see).
EXPLICIT_CALLS = [
    ("PutObject", {"Bucket": "b", "Key": "k", "Body": b"x", "IfNoneMatch": "*"}),
    ("PutObject", {"Bucket": "b", "Key": "k", "Body": b"x", "IfMatch": '"etag"'}),
    ("PutObject", {"Bucket": "b", "Key": "k", "Body": b"x", "ChecksumAlgorithm": "CRC32"}),
    ("DeleteObject", {"Bucket": "b", "Key": "k", "IfMatch": '"etag"'}),
    (
        "CreateMultipartUpload",
        {"Bucket": "b", "Key": "k", "ChecksumAlgorithm": "CRC32", "ChecksumType": "FULL_OBJECT"},
    ),
    (
        "UploadPart",
        {
            "Bucket": "b",
            "Key": "k",
            "UploadId": "u",
            "PartNumber": 1,
            "Body": b"x",
            "ChecksumAlgorithm": "CRC32",
        },
    ),
    (
        "CompleteMultipartUpload",
        {
            "Bucket": "b",
            "Key": "k",
            "UploadId": "u",
            "IfNoneMatch": "*",
            "ChecksumCRC32": "AAAAAA==",
            "ChecksumType": "FULL_OBJECT",
            "MultipartUpload": {
                "Parts": [{"PartNumber": 1, "ETag": '"e"', "ChecksumCRC32": "AAAAAA=="}]
            },
        },
    ),
    ("GetObject", {"Bucket": "b", "Key": "k", "ChecksumMode": "ENABLED"}),
]


def s3_keyword_calls() -> list[tuple[str, str, list[str]]]:
    """(file:line, method, keyword names) of every S3 client call in the package."""
    found = []
    for root in ("pgautodumper", "lambdas"):
        for path in sorted((REPO / root).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                if node.func.attr not in S3_METHODS:
                    continue
                names = [kw.arg for kw in node.keywords if kw.arg is not None]
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                found.append((where, node.func.attr, names))
    return found


def test_the_keyword_scan_sees_the_conditional_writes():
    calls = s3_keyword_calls()
    keywords = {name for _, _, names in calls for name in names}
    assert {"IfNoneMatch", "IfMatch", "ChecksumAlgorithm", "ChecksumMode"} <= keywords, calls


# Runs with the packaged tree first on sys.path (as Lambda's /var/task is).
_VALIDATE = r"""
import json, sys
import botocore, botocore.session
from botocore.awsrequest import AWSResponse
from botocore.validate import ParamValidator

target, payload = sys.argv[1], json.loads(sys.stdin.read())
assert botocore.__file__.startswith(target), botocore.__file__
session = botocore.session.get_session()
model = session.get_service_model("s3")
problems = []
snake = {model.operation_model(op).name: op for op in model.operation_names}
from botocore import xform_name
by_method = {xform_name(op): op for op in model.operation_names}
for where, method, names in payload["scanned"]:
    members = model.operation_model(by_method[method]).input_shape.members
    problems += [f"{where}: {method}({n}=) unknown to botocore {botocore.__version__}"
                 for n in names if n not in members]
validator = ParamValidator()
for operation, params in payload["explicit"]:
    params = {k: (v.encode() if k == "Body" else v) for k, v in params.items()}
    report = validator.validate(params, model.operation_model(operation).input_shape)
    if report.has_errors():
        problems.append(f"{operation}: {report.generate_report()}")

# What reaches the wire: a PutObject carries a checksum header by default (Object Lock
# buckets refuse a PutObject without Content-MD5 or x-amz-checksum-*), and the condition.
sent = []
class _Raw:
    def stream(self, **_):
        yield b""
def capture(request, **_):
    sent.append(dict(request.headers))
    return AWSResponse(request.url, 200, {}, _Raw())
client = session.create_client("s3", region_name="us-east-1", aws_access_key_id="x",
                               aws_secret_access_key="y")
client.meta.events.register("before-send.s3.PutObject", capture)
client.put_object(Bucket="b", Key="k", Body=b"x", IfNoneMatch="*")
headers = {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in sent[0].items()}
# The checksum travels as a header or, on a streamed body, as a declared trailer.
checksum = [k for k in headers if k.startswith("x-amz-checksum-") or k == "content-md5"]
if headers.get("x-amz-trailer", "").startswith("x-amz-checksum-"):
    checksum.append(headers["x-amz-trailer"])
if not checksum:
    problems.append(f"PutObject sent no checksum header by default: {sorted(headers)}")
if headers.get("if-none-match") != "*":
    problems.append("PutObject did not send If-None-Match")
print(json.dumps({"version": botocore.__version__, "problems": problems}))
"""


@pytest.fixture(scope="module")
def packaged_sdk(tmp_path_factory) -> Path:
    """The handlers' dependencies installed as `make package` installs them (PyPI; pip cache)."""
    target = tmp_path_factory.mktemp("lambda-deps")
    try:
        package_lambdas.install(target, "x86_64", "3.12")
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"pip could not install the Lambda dependencies: {exc}")
    return target


def test_packaged_botocore_accepts_every_s3_parameter_the_code_sends(packaged_sdk: Path):
    payload = json.dumps({"scanned": s3_keyword_calls(), "explicit": [
        (operation, {k: (v.decode() if isinstance(v, bytes) else v) for k, v in params.items()})
        for operation, params in EXPLICIT_CALLS
    ]})  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(packaged_sdk)!r})\n"
         + _VALIDATE, str(packaged_sdk)],
        input=payload, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["problems"] == [], report
    pinned = re.search(r"^botocore==(\S+)", package_lambdas.CONSTRAINTS.read_text(), re.M)
    assert pinned and report["version"] == pinned.group(1)
