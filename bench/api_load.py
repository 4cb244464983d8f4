"""Benchmark: the responses API under load, served by gunicorn with production settings.

Starts gunicorn on loopback (RETENTION_ENV=production, DEBUG off, a random SECRET_KEY, the
PostgreSQL database of DATABASE_URL, Redis for the rate counter when REDIS_URL is set), creates
an API client and a campaign with interventions, then drives three scenarios in turn, each with
CONCURRENCY clients for --seconds:

1. reference: `POST /bench/reference-write`, a plain Django view that INSERTs one row (routed
   only because the server gets RETENTION_BENCH_ENDPOINTS=1) — the floor of a writing request;
2. single: `POST /api/v1/responses` with one response per request;
3. bulk: `POST /api/v1/responses` with --batch responses per request (one scenario per size
   given: 100 and 1,000 — the most one request may carry — by default).

Every request has a fresh idempotency key, so each one writes. The per-client rate limit is
raised for the run (API_THROTTLE_RATE): the bench measures the handler, not the limiter.
Goal (issue 10): zero errors, and ≥ 1,000 single responses/s or ≥ 10,000 responses/s in bulk.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/retention_bench_api \\
        .venv/bin/python bench/api_load.py [--seconds 60 --workers 4 --batch 100 1000]

The database is created when missing and migrated; its campaign responses are truncated
first: point DATABASE_URL at a database made for benchmarks. Exit status 0 when measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from _machine import cpu_model  # noqa: E402
from _postgres import conninfo, database_settings, ensure_database  # noqa: E402
from _summary import figure, summary_print  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retention.settings")

CONCURRENCY = 50
INTERVENTIONS = 1_000
GOAL_SINGLE = 1_000  # responses/s, one per request
GOAL_BULK = 10_000  # responses/s, in bulk requests
HOST = "127.0.0.1"


@dataclass
class Result:
    name: str
    items_per_request: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    server_cpu: float = 0.0  # CPU seconds of the gunicorn workers and their PostgreSQL backends

    @property
    def requests_per_second(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    @property
    def items_per_second(self) -> float:
        return self.requests_per_second * self.items_per_request

    @property
    def cpu_ms_per_item(self) -> float:
        items = len(self.latencies) * self.items_per_request
        return self.server_cpu * 1000 / items if items else float("nan")

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="per scenario (default 60)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument(
        "--batch",
        type=int,
        nargs="+",
        default=[100, 1000],
        help="responses per bulk request, one scenario per size (default 100 1000)",
    )
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument(
        "--port", type=int, default=0, help="loopback port for gunicorn (default: a free one)"
    )
    return parser.parse_args()


def prepare_data() -> tuple[str, list[int]]:
    """Migrate; a fresh API client; a campaign with INTERVENTIONS treatment interventions."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from campaigns.models import Campaign, CampaignCycle, Intervention, Rule
    from customers.models import ApiClient, Customer
    from customers.services import api_client_create
    from retention.bench_views import REFERENCE_TABLE

    call_command("migrate", verbosity=0, interactive=False)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE campaigns_response")
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {REFERENCE_TABLE} "
            "(id bigserial PRIMARY KEY, body jsonb NOT NULL, created_at timestamptz DEFAULT now())"
        )
        cursor.execute(f"TRUNCATE {REFERENCE_TABLE}")
    ApiClient.objects.filter(name="bench-api-load").delete()
    _client, key = api_client_create(name="bench-api-load")
    now = datetime.now(UTC)
    campaign, _ = Campaign.objects.get_or_create(
        name="Bench API load", defaults={"status": "active", "salt": "bench-api"}
    )
    cycle, _ = CampaignCycle.objects.get_or_create(
        campaign=campaign, cycle_key="bench", defaults={"started_at": now}
    )
    rule, _ = Rule.objects.get_or_create(campaign=campaign, name="everyone", channel="coupon")
    Customer.objects.bulk_create(
        [Customer(external_id=f"load{i:05d}") for i in range(INTERVENTIONS)],
        ignore_conflicts=True,
    )
    customers = Customer.objects.filter(external_id__startswith="load").order_by("pk")
    Intervention.objects.bulk_create(
        [
            Intervention(
                campaign=campaign,
                cycle=cycle,
                rule=rule,
                customer=customer,
                arm="treatment",
                channel="coupon",
                churn_probability=0.5,
                status="sent",
                created_at=now,
            )
            for customer in customers[:INTERVENTIONS]
        ],
        ignore_conflicts=True,
    )
    ids = list(
        Intervention.objects.filter(campaign=campaign).values_list("pk", flat=True)[:INTERVENTIONS]
    )
    return key, ids


def server_env(port: int) -> dict[str, str]:
    """Production settings for a plain-HTTP server on loopback."""
    env = dict(os.environ)
    env.update(
        RETENTION_ENV="production",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(48),
        ALLOWED_HOSTS=HOST,
        SECURE_SSL_REDIRECT="false",  # plain HTTP on loopback, no TLS proxy in front
        SMS_BACKEND="webhook",  # production refuses the console backend; nothing is sent
        SMS_WEBHOOK_URL=f"http://{HOST}:9/",
        API_THROTTLE_RATE="100000000/min",
        RETENTION_BENCH_ENDPOINTS="1",
    )
    return env


def start_server(args: argparse.Namespace) -> subprocess.Popen[bytes]:
    command = [
        str(Path(sys.executable).parent / "gunicorn"),
        "retention.wsgi",
        f"--bind={HOST}:{args.port}",
        f"--workers={args.workers}",
        "--worker-class=sync",
        "--backlog=2048",
        "--log-level=warning",
    ]
    return subprocess.Popen(command, cwd=ROOT, env=server_env(args.port), start_new_session=True)


async def wait_ready(base: str, server: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            if server.poll() is not None:
                sys.exit(f"gunicorn exited with status {server.returncode}")
            try:
                async with session.get(f"{base}/api/docs/") as response:
                    if response.status < 500:  # answering (the docs page: 200 since it is public)
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    sys.exit("gunicorn did not answer within 30 s")


class Bodies:
    """Request bodies with a fresh idempotency key each, over the interventions in turn."""

    def __init__(self, interventions: list[int], batch: int) -> None:
        self.interventions = interventions
        self.batch = batch
        self.counter = 0
        self.run = secrets.token_hex(4)
        self.occurred_at = datetime.now(UTC).isoformat()

    def item(self) -> dict[str, Any]:
        self.counter += 1
        return {
            "intervention": self.interventions[self.counter % len(self.interventions)],
            "kind": "opened",
            "occurred_at": self.occurred_at,
            "idempotency_key": f"load-{self.run}-{self.counter}",
        }

    def body(self) -> bytes:
        items = [self.item() for _ in range(self.batch)]
        return json.dumps(items[0] if self.batch == 1 else items).encode()


class ServerCpu:
    """CPU seconds spent serving a scenario: the gunicorn workers' and their PostgreSQL
    backends' user + system time (from /proc), sampled every half second while the scenario
    runs. Unlike requests/s it hardly depends on what else the machine is doing, so it compares
    runs on a busy shared machine. (The load generator's own CPU is not counted.)"""

    def __init__(self, server_pid: int, config: dict[str, Any]) -> None:
        self.server_pid = server_pid
        self.config = config
        self.first: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.tick = os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _ticks(pid: int) -> tuple[int, int] | None:
        """(parent pid, user + system ticks) of a process, None once it has gone."""
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return int(fields[1]), int(fields[11]) + int(fields[12])

    def _pids(self, cursor: Any) -> list[int]:
        workers = [
            int(entry.name)
            for entry in Path("/proc").iterdir()
            if entry.name.isdigit()
            and (info := self._ticks(int(entry.name)))
            and info[0] == self.server_pid
        ]
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        return workers + [row[0] for row in cursor.fetchall()]

    def _sample(self, cursor: Any) -> None:
        initial = not self.last  # later newcomers (a reconnecting backend) count from zero
        for pid in self._pids(cursor):
            info = self._ticks(pid)
            if info is not None:
                self.first.setdefault(pid, info[1] if initial else 0)
                self.last[pid] = info[1]

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(**conninfo(self.config, self.config["NAME"]), autocommit=True) as db:
            cursor = db.cursor()
            self._sample(cursor)
            while not self.stop.wait(0.5):
                self._sample(cursor)
            self._sample(cursor)

    def __enter__(self) -> ServerCpu:
        self.thread.start()
        while not self.last and self.thread.is_alive():
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    @property
    def seconds(self) -> float:
        return sum(self.last[pid] - self.first[pid] for pid in self.last) / self.tick


async def drive(
    base: str, path: str, headers: dict[str, str], bodies: Bodies, args: argparse.Namespace
) -> Result:
    result = Result(name=path, items_per_request=bodies.batch)
    deadline = time.perf_counter() + args.seconds
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=60)

    async def client(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                async with session.post(base + path, data=bodies.body()) as response:
                    await response.read()
                    ok = response.status in (200, 201)
                    sample = f"{response.status} {(await response.text())[:200]}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                ok, sample = False, repr(exc)
            if ok:
                result.latencies.append(time.perf_counter() - started)
            else:
                result.errors += 1
                if len(result.error_samples) < 3:
                    result.error_samples.append(sample)

    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers
    ) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(args.concurrency)))
        result.seconds = time.perf_counter() - started
    return result


async def run_scenarios(
    args: argparse.Namespace,
    key: str,
    interventions: list[int],
    server_pid: int,
    config: dict[str, Any],
) -> list[Result]:
    base = f"http://{HOST}:{args.port}"
    json_headers = {"Content-Type": "application/json"}
    api_headers = {**json_headers, "Authorization": f"Api-Key {key}"}
    scenarios = [
        ("reference: one-row INSERT view", "/bench/reference-write", json_headers, 1),
        ("single: POST /api/v1/responses", "/api/v1/responses", api_headers, 1),
    ]
    scenarios += [
        (f"bulk: {batch:,} per request", "/api/v1/responses", api_headers, batch)
        for batch in args.batch
    ]
    results = []
    for name, path, headers, batch in scenarios:
        print(f"  {name} for {args.seconds:g} s ...", flush=True)
        with ServerCpu(server_pid, config) as cpu:
            result = await drive(base, path, headers, Bodies(interventions, batch), args)
        result.name = name
        result.server_cpu = cpu.seconds
        results.append(result)
    return results


def database_figures() -> tuple[int, int, str]:
    from django.db import connection

    from retention.bench_views import REFERENCE_TABLE

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM campaigns_response")
        (responses,) = cursor.fetchone()
        cursor.execute(f"SELECT count(*) FROM {REFERENCE_TABLE}")
        (reference,) = cursor.fetchone()
        cursor.execute("SELECT version()")
        (version,) = cursor.fetchone()
    return responses, reference, version.split(" (")[0]


def report(args: argparse.Namespace, results: list[Result]) -> None:
    responses, reference_rows, version = database_figures()
    print()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"machine     {cpu_model()} · {os.cpu_count()} CPUs · {platform.machine()} · Python "
        f"{platform.python_version()} · {version} · load average {load} (other work competes)"
    )
    print(
        f"server      gunicorn, {args.workers} sync workers, production settings, loopback; "
        f"load: {args.concurrency} concurrent aiohttp clients in one process on the same machine"
    )
    print(
        f"data        {INTERVENTIONS:,} interventions; written: {responses:,} responses, "
        f"{reference_rows:,} reference rows; {args.seconds:g} s per scenario"
    )
    print(
        f"{'scenario':<36}{'requests':>9}{'req/s':>9}{'items/s':>10}"
        f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}{'CPU ms/item':>13}"
    )
    for r in results:
        print(
            f"{r.name:<36}{len(r.latencies):>9,}{r.requests_per_second:>9,.0f}"
            f"{r.items_per_second:>10,.0f}{r.percentile(50):>9.1f}{r.percentile(95):>9.1f}"
            f"{r.percentile(99):>9.1f}{r.errors:>8,}{r.cpu_ms_per_item:>13.3f}"
        )
        for sample in r.error_samples:
            print(f"    error: {sample}")
    reference, single, *bulks = results
    errors = sum(r.errors for r in results)
    best_bulk = max((bulk.items_per_second for bulk in bulks), default=0.0)
    met = errors == 0 and (single.items_per_second >= GOAL_SINGLE or best_bulk >= GOAL_BULK)
    ratios = "; ".join(
        f"bulk of {bulk.items_per_request:,} responses/s / reference rows/s = "
        f"{bulk.items_per_second / reference.items_per_second:.1f}"
        for bulk in bulks
    )
    print(
        f"ratio       single / reference requests/s = "
        f"{single.requests_per_second / reference.requests_per_second:.2f}; {ratios}"
    )
    cpus = os.cpu_count() or 1
    print(
        "server CPU  (gunicorn workers + their PostgreSQL backends, per item; less other work's "
        "noise than req/s) → items per CPU-second: "
        + "; ".join(f"{r.name.split(':')[0]} {1000 / r.cpu_ms_per_item:,.0f}" for r in results)
        + f"; {cpus} CPUs given wholly to the server would serve at most ×{cpus} that"
    )
    print(
        f"goal        zero errors and ≥ {GOAL_SINGLE:,} single responses/s or ≥ {GOAL_BULK:,} "
        f"responses/s in bulk → {'MET' if met else 'NOT MET'}"
    )
    best = max(bulks, key=lambda bulk: bulk.items_per_second, default=None)
    rows = [
        figure(
            "single responses, 50 clients",
            round(single.items_per_second),
            "responses/s",
            goal=f"≥ {GOAL_SINGLE:,}/s, or bulk ≥ {GOAL_BULK:,}/s",
            reference=round(reference.items_per_second),
            ratio=single.items_per_second / reference.items_per_second,
            passed=met,
        ),
        figure("errors, all scenarios", errors, "", goal="0", passed=errors == 0),
    ]
    if best is not None:
        rows.insert(
            1,
            figure(
                f"bulk responses, {best.items_per_request:,} per request",
                round(best.items_per_second),
                "responses/s",
                reference=round(reference.items_per_second),
                ratio=best.items_per_second / reference.items_per_second,
            ),
        )
    summary_print(rows, size=f"{INTERVENTIONS:,} interventions, {args.seconds:g} s per scenario")


def main() -> None:
    args = parse_args()
    if not args.port:
        # A free port, so runs by several people on one machine do not collide.
        with socket.socket() as probe:
            probe.bind((HOST, 0))
            args.port = probe.getsockname()[1]
    config = database_settings("api_load.py", "retention_bench_api")
    ensure_database(config)
    print("Preparing the database ...", flush=True)
    key, interventions = prepare_data()
    server = start_server(args)
    try:
        asyncio.run(wait_ready(f"http://{HOST}:{args.port}", server))
        results = asyncio.run(run_scenarios(args, key, interventions, server.pid, config))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    report(args, results)


if __name__ == "__main__":
    main()
