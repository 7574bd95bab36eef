"""The schemathesis side of tests/test_fuzz_api.py, run as a process of its own.

A client in another process, as real clients are: schemathesis and Hypothesis
generate cases in pure Python, and in the server's process their thread would
take the GIL from the event loop the live echo is measured on.

    python -m tests.fuzz_api_client BASE_URL [--examples N] [--only TEXT] [--header K:V]

prints one JSON object: ``failures`` ({"<operation> [<mode>]": [report]}),
``counts`` (requests per operation) and ``log`` ([monotonic start, seconds, label,
status] per request; the clock is the machine's, the same in both processes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)


def failure_body(ctx, response, case) -> None:
    """Every 4xx that answers JSON answers the app's failure body
    ``{"status": "failed", "meta": {"error": str, "message": str, ...}}``."""
    if not 400 <= response.status_code < 500:
        return None
    if "json" not in (response.headers.get("Content-Type") or [""])[0]:
        return None  # content_type_conformance judges those
    body = response.json()
    assert isinstance(body, dict) and body.get("status") == "failed", f"not a failure body: {body}"
    meta = body.get("meta")
    assert isinstance(meta, dict), f"no meta: {body}"
    assert isinstance(meta.get("error"), str) and meta["error"], f"no meta.error: {body}"
    assert isinstance(meta.get("message"), str) and meta["message"], f"no meta.message: {body}"
    return None


# Operations whose schema-valid bodies may still be refused: JSON Schema cannot say what a
# valid SDP offer or ICE candidate is (400 invalid_offer / invalid_candidate).
LOOSE = {"postOffer"}

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    failure_body,
]


def aim(case, target: tuple[str, str, str] | None, n: int) -> None:
    """Every other case of the input hook of the target's stream, and of the SSE ticket,
    goes to the live target session with its token: its 200s are checked too (a random
    webrtc_id only ever gets 404)."""
    if target is None or n % 2 or not isinstance(case.body, dict):
        return
    stream, webrtc_id, token = target
    op = case.operation.definition.raw.get("operationId", "")
    if op == "streamOutputsTicket":
        case.path_parameters = {**(case.path_parameters or {}), "stream": stream}
    elif op != f"setInput_{stream}":
        return
    case.body = {**case.body, "webrtc_id": webrtc_id, "token": token}


def fuzz(
    base: str,
    headers: dict[str, str],
    examples: int,
    only: str | None,
    target: tuple[str, str, str] | None = None,
) -> dict:
    schema = schemathesis.openapi.from_url(f"{base}/rtc/openapi.json", timeout=20)
    failures: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    log: list[tuple[float, float, str, int]] = []
    session = requests.Session()

    def runner(operation, mode, label: str, checks: list):
        """The hypothesis test of one operation in one mode (run at once by the loop)."""

        @settings(
            derandomize=True,
            database=None,
            deadline=None,
            max_examples=examples,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case) -> None:
            counts[operation.label] = counts.get(operation.label, 0) + 1
            aim(case, target, counts[operation.label])
            started = time.monotonic()
            response = case.call(base_url=base, session=session, headers=headers, timeout=20)
            log.append((started, round(time.monotonic() - started, 3), label, response.status_code))
            case.validate_response(
                response,
                checks=checks,
                headers=headers,
                transport_kwargs={"base_url": base, "session": session, "headers": headers},
            )

        return run

    for result in schema.get_all_operations():
        operation = result.ok()
        if only and only not in operation.label:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            label = f"{operation.label} [{mode.value}]"
            checks = CHECKS + (
                [negative_data_rejection]
                if mode.is_negative
                else []
                if operation.definition.raw.get("operationId") in LOOSE
                else [positive_data_acceptance]
            )
            try:
                runner(operation, mode, label, checks)()
            except Unsatisfiable:  # nothing to break: no parameters, no body (GET /streams/)
                if mode.is_positive:
                    raise
            except BaseException as exc:  # every operation runs (schemathesis
                # raises a BaseExceptionGroup of its failures)
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                failures.setdefault(label, []).append(str(exc))
    return {"failures": failures, "counts": counts, "log": log}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("--examples", type=int, default=12)
    parser.add_argument("--only")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--target", help="stream:webrtc_id:token of a live session")
    args = parser.parse_args(argv)
    headers = dict(h.split(":", 1) for h in args.header)
    target = tuple(args.target.split(":", 2)) if args.target else None
    json.dump(fuzz(args.base, headers, args.examples, args.only, target), sys.stdout)


if __name__ == "__main__":
    main()
