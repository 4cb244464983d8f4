"""Benchmark: relay throughput for push notifications against email, in the same run.

N customers, each with one Web Push device; one push campaign and one email campaign take every
customer (no control group). The relay then delivers the N push notifications to a local push
service (real RFC 8291 encryption and a VAPID signature per push service, through pywebpush and
one keep-alive HTTP session per chunk), and the N emails to a local SMTP server (aiosmtpd): the
reference, measured on the same machine in the same run. Both servers run in this process (a
thread each), so they share its interpreter with the relay alike. The relay's concurrency comes
from settings (CAMPAIGN_RELAY_HTTP_THREADS for push, CAMPAIGN_RELAY_SMTP_CONNECTIONS for email;
set them in the environment) and is printed with the figures.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/retention_bench_push \
        BENCH_MESSAGES=100000 .venv/bin/python bench/push.py
"""

from __future__ import annotations

import io
import os
import platform
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _machine import cpu_model  # noqa: E402
from _postgres import ensure_database_url  # noqa: E402
from _summary import figure, summary_print  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/retention_bench_push"
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "100000"))


def setup_django() -> None:
    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    if not url.startswith("postgres"):
        sys.exit("bench/push.py needs PostgreSQL: DATABASE_URL=postgres://...")
    ensure_database_url(url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retention.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def prepare(now: datetime, base_url: str, subscription: Any) -> None:
    """MESSAGES scored customers and one web device each (COPY)."""
    from django.db import connection

    print(f"Preparing {MESSAGES:,} customers with one Web Push device each ...", flush=True)
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE campaigns_inboxmessage, campaigns_response, campaigns_callbacktask, "
            "campaigns_coupon, campaigns_intervention, campaigns_campaigncycle, campaigns_rule, "
            "campaigns_campaign, campaigns_offer, campaigns_messagetemplate, "
            "campaigns_relayratewindow, customers_device, customers_consent, customers_order, "
            "customers_event, customers_customer RESTART IDENTITY CASCADE"
        )
        stamp = now.isoformat()
        buffer = io.StringIO()
        for i in range(MESSAGES):
            buffer.write(
                f"b{i:07d}\tCustomer {i}\tc{i}@example.com\t\tUTC\t\t{{}}\tf\t0.8\tcritical\t"
                f"{stamp}\tm1\t{stamp}\t{stamp}\n"
            )
        buffer.seek(0)
        columns = (
            "external_id, name, email, phone, time_zone, country, attributes, erased, "
            "churn_probability, risk_tier, scored_at, score_model_version, created_at, updated_at"
        )
        with cursor.cursor.copy(f"COPY customers_customer ({columns}) FROM STDIN") as copy:
            copy.write(buffer.getvalue())
        keys = subscription.as_json()["keys"]
        cursor.execute(
            "INSERT INTO customers_device (customer_id, platform, token, p256dh, auth, status, "
            "unregistered_reason, created_at, last_seen_at) "
            "SELECT id, 'web', %s || id, %s, %s, 'active', '', %s, %s FROM customers_customer",
            [f"{base_url}/wp/", keys["p256dh"], keys["auth"], now, now],
        )


def campaigns() -> tuple[Any, Any]:
    from campaigns.models import Campaign, CampaignStatus, MessageTemplate, Rule

    def one(name: str, channel: str, priority: int) -> Any:
        template = MessageTemplate.objects.create(
            name=f"bench {channel}",
            channel=channel,
            subject="{{ first_name }}, we miss you",
            body="Hi {{ first_name }}, come back: {{ offer.description }}.",
            deep_link="https://shop.example/back" if channel == "push" else "",
        )
        campaign = Campaign.objects.create(
            name=name,
            status=CampaignStatus.ACTIVE,
            control_percentage=Decimal("0"),
            cooldown_days=0,
            priority=priority,
            salt="bench",
        )
        Rule.objects.create(
            campaign=campaign, position=1, name=name, channel=channel, template=template
        )
        return campaign

    # Email outranks push, so its dispatch (second) is not stopped by the push campaign's rows.
    return one("bench push", "push", 2), one("bench email", "email", 1)


def relay(channel: str) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process — relay and both servers — , summary)."""
    from campaigns.services.relay import interventions_relay

    started, cpu = time.perf_counter(), time.process_time()
    summary = interventions_relay(channels=[channel])
    return time.perf_counter() - started, time.process_time() - cpu, summary


def main() -> None:
    setup_django()
    from django.conf import settings
    from django.db import connection

    from campaigns.channels.push import vapid_key_pair
    from campaigns.services.dispatch import campaign_dispatch
    from tests.campaigns.push_servers import Subscription, push_service
    from tests.campaigns.servers import smtp_server

    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.CAMPAIGN_FREQUENCY_CAPS = {}
    settings.GLOBAL_CONTROL_PERCENT = 0
    settings.WEBPUSH_VAPID_PRIVATE_KEY, settings.WEBPUSH_VAPID_PUBLIC_KEY = vapid_key_pair()
    now = datetime.now(UTC)
    with push_service() as service, smtp_server() as (smtp, port):
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        subscription = Subscription.new(f"{service.base_url}/wp/0")
        prepare(now, service.base_url, subscription)
        push_campaign, email_campaign = campaigns()
        for campaign in (push_campaign, email_campaign):
            summary = campaign_dispatch(campaign=campaign, now=now)
            print(f"dispatched  {campaign.name}: {summary.per_channel}", flush=True)
        print("Relaying push ...", flush=True)
        load = [os.getloadavg()[0]]
        push_seconds, push_cpu, push_summary = relay("push")
        load.append(os.getloadavg()[0])
        print(f"Relaying email ... (push took {push_seconds:.0f} s)", flush=True)
        email_seconds, email_cpu, email_summary = relay("email")
        load.append(os.getloadavg()[0])
        pushed = push_summary.sent.get("push", 0)
        mailed = email_summary.sent.get("email", 0)
        # One payload decrypted with the subscription's key: the bench sent real messages.
        sample = subscription.decrypt(service.of_kind("webpush")[-1]["body"])
        received = len(service.of_kind("webpush")), len(smtp.messages)
        with connection.cursor() as cursor:
            cursor.execute("SELECT version()")
            version = cursor.fetchone()[0].split(",")[0]
    print()
    print(
        f"machine     {cpu_model()} · {platform.machine()} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()} · {version}"
    )
    print(
        f"data        {MESSAGES:,} customers, one Web Push device each; {pushed:,} push "
        f"sent ({received[0]:,} received), {mailed:,} emails sent ({received[1]:,} received); "
        f"failed push {push_summary.failed}, email {email_summary.failed}"
    )
    print(f"sample      decrypted push payload title: {sample['title']!r}")
    print(
        f"settings    CAMPAIGN_RELAY_HTTP_THREADS={settings.CAMPAIGN_RELAY_HTTP_THREADS}, "
        f"CAMPAIGN_RELAY_SMTP_CONNECTIONS={settings.CAMPAIGN_RELAY_SMTP_CONNECTIONS}; load "
        f"average {load[0]:.1f} at the start, {load[1]:.1f} after push, {load[2]:.1f} at the end"
    )
    push_ms, email_ms = 1000 * push_cpu / max(pushed, 1), 1000 * email_cpu / max(mailed, 1)
    print(f"{'measure':<48}{'seconds':>10}{'messages/s':>12}{'CPU ms/msg':>12}")
    print(f"{'relay: push (Web Push, local push service)':<48}{push_seconds:>10.2f}"
          f"{pushed / push_seconds:>12,.0f}{push_ms:>12.2f}")  # fmt: skip
    print(f"{'reference: relay email (local SMTP server)':<48}{email_seconds:>10.2f}"
          f"{mailed / email_seconds:>12,.0f}{email_ms:>12.2f}")  # fmt: skip
    print("            (CPU: this process, i.e. the relay and the local server it sends to)")
    ratio = (pushed / push_seconds) / (mailed / email_seconds)
    print(f"ratio       push throughput = {ratio:.2f}x email throughput")
    delivered = min(pushed, received[0], mailed, received[1])
    summary_print(
        [
            figure(
                "relay throughput, push",
                round(pushed / push_seconds),
                "messages/s",
                reference=round(mailed / email_seconds),
                ratio=ratio,
            ),
            figure(
                "messages sent and received, each channel",
                delivered,
                "messages",
                goal=f"all {MESSAGES:,}",
                passed=delivered == MESSAGES,
            ),
        ],
        size=f"{MESSAGES:,} push + {MESSAGES:,} email",
    )


if __name__ == "__main__":
    main()
