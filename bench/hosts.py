"""Throughput with two worker hosts against one: the capacity ladder over network namespaces.

    .venv/bin/python bench/hosts.py --kind audio --ladder 2:20:2 \\
        --host-cores "0-3;4-7" --clients-cores 8-15 --workers-per-host 2

Builds the hosts of ``tests/netns.py`` (root, iproute2, redis-server, socat,
PostgreSQL at DATABASE_URL): worker hosts with their own addresses on a bridge,
Redis and a PostgreSQL forwarder on the bridge, the clients in a namespace of
their own. It runs the benchmark's capacity ladder (``bench/run.py``'s
``measure``, the replay client, the same SLO) against host 1 alone, then
against hosts 1 and 2 with the sessions spread round-robin over every worker,
as a load balancer would. The workers serve the test project (``tests.asgi``:
``flip`` and ``echo``), pinned with ``taskset`` to each host's cores. The
report gives the sessions at SLO for each and the cores each side used at the
last passing step; two hosts can only show ~2x where each host has cores of its
own and the clients have theirs (``--host-cores``, ``--clients-cores``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import run  # noqa: E402
from tests.netns import Hosts, why_unusable  # noqa: E402

STREAMS = {"video": "flip", "audio": "echo"}


def ladder_for(
    hosts: Hosts, used: list[str], kind: str, ladder: list[int], args: argparse.Namespace
) -> dict:
    workers = [w for host in used for w in hosts.workers[host]]
    server = run.Server(
        f"{len(used)} host(s)",
        f"{len(used)} host(s), {len(workers)} worker(s)",
        [{"base": w["base"].rstrip("/"), "argv": [], "env": {}, "ready": ""} for w in workers],
        Path(hosts.logs),
    )
    server.procs = [w["process"] for w in workers]
    cfg = dict(run.MODES["quick"])
    options = {
        "sample": args.sample,
        "clients_cores": args.clients_cores,
        "client_prefix": ["ip", "netns", "exec", hosts.ns("c")],
        "client_env": {"BENCH_ICE_HOST": hosts.addresses["c"]},
    }
    procs = args.client_procs or (
        len(run.cpu_list(args.clients_cores)) if args.clients_cores else run.CORES
    )
    best, steps = 0, []
    for n in ladder:
        m = run.measure_quiet(
            cfg,
            server,
            STREAMS[kind],
            kind,
            n,
            "replay",
            args.window,
            cfg["warmup"],
            cfg["grace"],
            procs,
            [server],
            cfg["quiet_limit"],
            options=options,
        )
        ok = run.passes_capacity(m)
        load = run.machine_load(m)
        steps.append(
            {
                "sessions": n,
                "pass": ok,
                **load,
                "load_avg": m["load_avg"],
                "rt_p95": m["rt_p95"],
                "returned": m["returned"],
                "errors": m["errors"],
            }
        )
        run.log(
            f"{server.label}: n={n} p95 {run.fmt(m['rt_p95'], 1000)} ms back "
            f"{run.fmt(m['returned'], 100)}% server {run.fmt(load['server_cores'], 1)} cores, "
            f"clients {run.fmt(load['client_cores'], 1)} cores, load avg {m['load_avg'][0]:.2f} "
            f"-> {'pass' if ok else 'FAIL'} {m['errors'] or ''}"
        )
        if not ok:
            break
        best = n
    return {"label": server.label, "capacity": best, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kind", choices=("audio", "video"), default="audio")
    parser.add_argument("--ladder", default="1,2,3,4", help="'1,2,4' or START:STOP:STEP")
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--workers-per-host", type=int, default=1)
    parser.add_argument(
        "--host-cores", help="taskset CPU lists per host, ';'-separated (e.g. '0-3;4-7')"
    )
    parser.add_argument("--clients-cores", help="taskset CPU list for the clients")
    parser.add_argument("--client-procs", type=int)
    parser.add_argument("--sample", type=int, default=2)
    parser.add_argument("--out", help="JSON results path")
    args = parser.parse_args()
    missing = why_unusable()
    database_url = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    if missing:
        sys.exit(f"bench/hosts.py: {missing}")
    ladder = run.parse_ladder(args.ladder)
    cores = (args.host_cores or "").split(";")
    results = []
    with Hosts(2) as hosts:
        hosts.build()
        hosts.start_redis()
        hosts.forward_postgres(database_url)
        env = hosts.worker_env({"RTCSTREAM_TEST_HEARTBEAT": "1.0", "RTCSTREAM_TEST_LEASE": "10"})
        hosts.migrate(env)
        for i, host in enumerate(("h1", "h2")):
            for _ in range(args.workers_per_host):
                hosts.start_worker(host, env, cores[i] if i < len(cores) and cores[i] else None)
        for used in (["h1"], ["h1", "h2"]):
            results.append(ladder_for(hosts, used, args.kind, ladder, args))
    one, two = results
    lines = [
        f"== {args.kind} sessions at SLO (p95 <= 250 ms, >= 95% back, none dropped), "
        f"ladder {ladder}, {args.workers_per_host} worker(s) per host, {run.CORES} cores; "
        f"hosts on cores {args.host_cores or 'any (shared)'}, clients on "
        f"{args.clients_cores or 'any (shared)'}"
    ]
    for r in results:
        passed = [s for s in r["steps"] if s["pass"]]
        last = passed[-1] if passed else (r["steps"][0] if r["steps"] else None)
        used = (
            f"at {last['sessions']}: server {run.fmt(last['server_cores'], 1)} cores, clients "
            f"{run.fmt(last['client_cores'], 1)} cores, load avg {last['load_avg'][0]:.2f}"
            if last
            else "nothing measured"
        )
        lines.append(f"  {r['label']:<28} {r['capacity']:>4}   {used}")
    ratio = two["capacity"] / one["capacity"] if one["capacity"] else None
    lines.append(
        f"  two hosts / one: {ratio:.2f}x" if ratio else "  two hosts / one: n/a (one host held 0)"
    )
    if run.CORES < 4 or not (args.host_cores and args.clients_cores):
        lines.append(
            f"  (this machine has {run.CORES} cores shared by both hosts and the clients: it "
            "cannot show the 1.8x that hosts with cores of their own give; pass --host-cores and "
            "--clients-cores on a machine with enough cores)"
        )
    report = "\n".join(lines)
    print(report)
    out = (
        Path(args.out) if args.out else run.RESULTS / f"hosts-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "results": results, "report": report}, indent=1))
    run.log(f"wrote {out}")


if __name__ == "__main__":
    main()
