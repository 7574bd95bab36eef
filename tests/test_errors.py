"""The one table of failure codes: statuses, close codes, the README, the package's uses."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from django_rtcstream.errors import ERRORS, ErrorCode, close_code, failure_body, markdown_table
from django_rtcstream.exceptions import (
    BrokerUnavailable,
    DatabaseUnavailable,
    InvalidInput,
    SignalingError,
    StreamNotFound,
    UnknownSession,
)

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "django_rtcstream"
CODES = {code.value for code in ErrorCode}


def test_every_code_is_unique_and_in_the_table_once():
    values = [code.value for code in ErrorCode]
    assert len(values) == len(set(values))
    assert list(ERRORS) == list(ErrorCode)
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", v) for v in values), values


def test_statuses_are_4xx_or_5xx_and_close_codes_4xxx():
    for code, spec in ERRORS.items():
        assert 400 <= spec.status < 600, code
        assert 4000 <= spec.close_code < 5000, code
        # 4000 + the status for the 4xx codes; the 5xx ones keep the 4400 they closed with,
        # except draining, which was born 4503 (start again: another worker answers).
        expected = 4000 + spec.status if spec.status < 500 or code == "draining" else 4400
        assert spec.close_code == expected, code
        assert spec.meaning and "\n" not in spec.meaning and "|" not in spec.meaning, code
        assert (code.status, code.close_code, code.meaning) == spec


def test_the_sockets_close_codes_are_the_ones_clients_know():
    """The wire values clients and tests already rely on."""
    assert {
        code: close_code(code)
        for code in [
            "unknown_stream",
            "concurrency_limit_reached",
            "connection_already_exists",
            "permission_denied",
            "unsupported_modality",
            "invalid_webrtc_id",
            "invalid_start",
            "invalid_signature",
            "database_unavailable",
        ]
    } == {
        "unknown_stream": 4404,
        "concurrency_limit_reached": 4429,
        "connection_already_exists": 4409,
        "permission_denied": 4403,
        "unsupported_modality": 4400,
        "invalid_webrtc_id": 4400,
        "invalid_start": 4400,
        "invalid_signature": 4403,
        "database_unavailable": 4400,
    }
    assert close_code("not_in_the_table") == 4400


def test_a_code_is_a_plain_string_on_the_wire():
    assert ErrorCode.UNKNOWN_STREAM == "unknown_stream"
    assert f"{ErrorCode.UNKNOWN_STREAM}" == str(ErrorCode.UNKNOWN_STREAM) == "unknown_stream"
    body = SignalingError(ErrorCode.CONCURRENCY_LIMIT_REACHED, "Full.", limit=3).body()
    assert json.loads(json.dumps(body)) == {
        "status": "failed",
        "meta": {"error": "concurrency_limit_reached", "message": "Full.", "limit": 3},
    }
    assert type(body["meta"]["error"]) is str


@pytest.mark.parametrize(
    ("error", "code", "status", "close"),
    [
        (StreamNotFound("No stream named 'x'."), "unknown_stream", 404, 4404),
        (UnknownSession("abc"), "unknown_connection", 404, 4404),
        (BrokerUnavailable("reaching it"), "broker_unavailable", 503, 4400),
        (DatabaseUnavailable(), "database_unavailable", 503, 4400),
        (SignalingError("permission_denied", "No."), "permission_denied", 403, 4403),
        (SignalingError(ErrorCode.INVALID_JSON, "Bad."), "invalid_json", 400, 4400),
    ],
)
def test_errors_take_their_status_and_close_code_from_the_table(error, code, status, close):
    assert (error.code, error.status, error.close_code) == (code, status, close)
    assert type(error.code) is str
    assert error.body()["meta"]["error"] == code and error.body()["meta"]["message"]


def test_a_stream_that_is_not_there_is_a_refusal_and_still_a_lookup_error():
    with pytest.raises(LookupError):
        raise StreamNotFound("No stream named 'x'.")
    with pytest.raises(SignalingError):
        raise StreamNotFound("No stream named 'x'.")


def test_an_invalid_input_body_has_the_errors_per_input():
    body = InvalidInput({"level": ["Too high."]}).body()
    assert body == {
        "status": "failed",
        "meta": {"error": "invalid_input", "message": "level: Too high."},
        "errors": {"level": ["Too high."]},
    }
    assert body["meta"] == failure_body("invalid_input", "level: Too high.")["meta"]


def _readme_table() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(
        r"<!-- error-codes:start[^>]*-->\n(.*?)<!-- error-codes:end -->", readme, re.DOTALL
    )
    assert match, "README.md has no <!-- error-codes:start --> ... <!-- error-codes:end --> table"
    return match.group(1)


def test_the_readme_table_is_the_one_generated_from_the_enum():
    expected = markdown_table()
    assert _readme_table() == expected, (
        "README.md's error-code table differs from django_rtcstream.errors.ERRORS; "
        "paste this between its markers:\n" + expected
    )


def _literal_codes() -> dict[str, list[str]]:
    """Every code the package writes as a string: ``SignalingError("<code>", ...)`` (and
    its subclasses) and ``{"error": "<code>"}`` in a failure body."""
    found: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        where = str(path.relative_to(ROOT))
        for node in ast.walk(tree):
            literal = None
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name == "SignalingError" and node.args:
                    literal = node.args[0]
            elif isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "error":
                        literal = value
            if isinstance(literal, ast.Constant) and isinstance(literal.value, str):
                found.setdefault(literal.value, []).append(f"{where}:{node.lineno}")
    return found


def test_every_code_the_package_writes_as_a_string_is_in_the_table():
    literal = _literal_codes()
    client_side = {"http_error"}  # the Python client's own, for a non-JSON answer
    unknown = {code: where for code, where in literal.items() if code not in CODES | client_side}
    assert not unknown, f"codes outside django_rtcstream.errors.ErrorCode: {unknown}"


def test_every_server_code_the_javascript_client_explains_is_in_the_table():
    js = (PACKAGE / "static" / "django_rtcstream" / "rtcstream.js").read_text()
    words = re.search(r"const words = \{(.*?)\n  \};", js, re.DOTALL)
    assert words, "explainFailure's table of words was not found in rtcstream.js"
    explained = set(re.findall(r"^\s+([a-z_]+):", words.group(1), re.MULTILINE))
    assert explained and explained <= CODES, explained - CODES
