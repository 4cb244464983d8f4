"""Benchmark: the relay alone, on the emails of an earlier `bench/cycle.py` run.

Puts the first N treatment emails of that cycle back to pending (status, attempts, sent_at,
lease and provider id reset), then times P relay processes (`interventions_relay`, as the
cycle's relay stage runs them) sending them to a local SMTP server (smtp-sink or aiosmtpd,
counting only: bench/_smtp_sink.py), with the relay settings of the cycle bench. Prints
emails/s, the relay processes' CPU per email and the emails the server accepted. Process
start-up (Django's imports, ~2 s) is inside the timing: compare runs of the same N.

For A/B comparisons of relay code on one machine: run it on each version of the code, with
nothing else running (`top` during a run shows the SMTP server and the relay processes).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/retention_bench_cycle \\
        .venv/bin/python bench/relay.py --emails 40000 --processes 2

Needs a database where `bench/cycle.py` has run (its interventions are the emails). Not part
of `make bench` (it measures no goal of its own; the cycle's relay stage is judged there).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _smtp_sink import SERVERS, smtp_server_choice, smtp_server_note, smtp_sink  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emails", type=int, default=40_000, help="emails put back to pending")
    parser.add_argument("--processes", type=int, default=2, help="relay processes at once")
    parser.add_argument("--smtp-connections", type=int, default=4)
    parser.add_argument("--round", type=int, default=50, help="CAMPAIGN_RELAY_ROUND_MESSAGES")
    parser.add_argument("--relay-chunk", type=int, default=1000, help="CAMPAIGN_RELAY_CHUNK")
    parser.add_argument(
        "--overlap",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="CAMPAIGN_RELAY_OVERLAP_ROUNDS",
    )
    parser.add_argument(
        "--smtp-server",
        choices=SERVERS,
        default="auto",
        help="the local SMTP server (bench/_smtp_sink.py): auto = smtp-sink when installed",
    )
    return parser.parse_args()


def _environment(args: argparse.Namespace, port: int) -> None:
    """The cycle bench's relay settings (bench/cycle.py), inherited by the relay processes."""
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "retention.settings",
            "DEBUG": os.environ.get("DEBUG", "false"),  # as in production
            "CAMPAIGN_QUIET_HOURS": "0-0",
            "CAMPAIGN_RATE_EMAIL": "1000000000",
            "EMAIL_BACKEND": "smtp",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(port),
            "CAMPAIGN_RELAY_SMTP_CONNECTIONS": str(args.smtp_connections),
            "CAMPAIGN_RELAY_ROUND_MESSAGES": str(args.round),
            "CAMPAIGN_RELAY_CHUNK": str(args.relay_chunk),
            "CAMPAIGN_RELAY_OVERLAP_ROUNDS": "true" if args.overlap else "false",
        }
    )


def _relay(results: Any) -> None:
    import django

    django.setup()
    from campaigns.services.relay import interventions_relay

    started = time.process_time()
    summary = interventions_relay(channels=["email"])
    results.put((sum(summary.sent.values()), time.process_time() - started))


def _reset(emails: int) -> int:
    from django.db import connection

    from campaigns.models import Arm, Intervention, InterventionStatus

    ids = Intervention.objects.filter(channel="email", arm=Arm.TREATMENT).order_by("pk")
    wanted = list(ids.values_list("pk", flat=True)[:emails])
    if connection.vendor != "postgresql" or not wanted:
        raise SystemExit("bench/relay.py needs the PostgreSQL database of a bench/cycle.py run")
    return Intervention.objects.filter(pk__in=wanted).update(
        status=InterventionStatus.PENDING,
        attempts=0,
        sent_at=None,
        claimed_at=None,
        provider_message_id="",
        reason="",
        detail="",
    )


def main() -> int:
    args = parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("set DATABASE_URL to the database of a bench/cycle.py run", file=sys.stderr)
        return 2
    from _machine import cpu_model, python_speed

    smtp_server = smtp_server_choice(args.smtp_server)
    with smtp_sink(smtp_server) as (accepted, port):
        _environment(args, port)
        import django

        django.setup()
        from django.db import connection

        pending = _reset(args.emails)
        connection.close()
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        processes = [context.Process(target=_relay, args=(results,)) for _ in range(args.processes)]
        started = time.perf_counter()
        for process in processes:
            process.start()
        done = [results.get() for _ in processes]
        for process in processes:
            process.join()
        seconds = time.perf_counter() - started
    sent = sum(n for n, _ in done)
    cpu = sum(c for _, c in done)
    print(
        f"bench/relay.py — {pending:,} emails put back to pending; {args.processes} relay "
        f"processes, {args.smtp_connections} SMTP connections each, rounds of {args.round}, "
        f"chunks of {args.relay_chunk}; {cpu_model()}, {os.cpu_count()} cores (3M additions in "
        f"a loop: {python_speed():.2f} s), load average {os.getloadavg()[0]:.1f} after"
    )
    print(
        f"sent {sent:,} in {seconds:.1f} s = {sent / seconds:,.0f} emails/s; relay processes' "
        f"CPU {cpu / max(sent, 1) * 1000:.3f} ms an email; accepted by the SMTP server "
        f"({smtp_server}) "
        f"{accepted.value:,}{smtp_server_note(smtp_server)}"
    )
    return 0 if sent == accepted.value == pending else 1


if __name__ == "__main__":
    raise SystemExit(main())
