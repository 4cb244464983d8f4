"""Regenerate the screenshots in docs/screenshots/ from the demo database.

    make demo && make screenshots

Starts the development server on a free loopback port against the same database, logs in as a
temporary superuser (created here, deleted at the end), opens each page in headless Chromium
(Playwright) at 1,280 px and saves a full-page PNG. A page that answers other than 200 or shows a
traceback stops the script with its name. Needs Chromium (`apt-get install chromium`).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "screenshots"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
USERNAME = "screenshots-temporary"

sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retention.settings")


def pages() -> list[tuple[str, str]]:
    """(file name, path) of every page shown, read from the demo database."""
    from campaigns.models import CallbackTask, Campaign, MessageTemplate
    from customers.models import Customer
    from scoring.models import ChurnModel, ScoringRun

    found: list[tuple[str, str]] = [("overview", "/admin/")]
    campaign = Campaign.objects.order_by("pk").first()
    if campaign is not None:
        base = f"/admin/campaigns/campaign/{campaign.pk}"
        found += [
            ("campaign", f"{base}/change/"),
            ("campaign-preview", f"{base}/preview/"),
            ("campaign-summary", f"{base}/summary/"),
            ("uplift-report", f"{base}/uplift/"),
            ("program-uplift", "/admin/campaigns/campaign/program-uplift/"),
        ]
    template = MessageTemplate.objects.order_by("pk").first()
    if template is not None:
        found.append(
            ("message-template", f"/admin/campaigns/messagetemplate/{template.pk}/change/")
        )
    callback = CallbackTask.objects.order_by("due_at", "pk").first()
    found.append(("callbacks", "/admin/campaigns/callbacktask/"))
    if callback is not None:
        found.append(("callback", f"/admin/campaigns/callbacktask/{callback.pk}/change/"))
    customer = Customer.objects.filter(scores__isnull=False).order_by("pk").first()
    if customer is not None:
        found.append(("customer", f"/admin/customers/customer/{customer.pk}/change/"))
    model = ChurnModel.objects.filter(status="active").first()
    if model is not None:
        found.append(("churn-model", f"/admin/scoring/churnmodel/{model.pk}/change/"))
    run = ScoringRun.objects.order_by("-started_at").first()
    if run is not None:
        found.append(("scoring-run", f"/admin/scoring/scoringrun/{run.pk}/change/"))
    found += [("risk-tiers", "/admin/scoring/risktier/"), ("api-docs", "/api/docs/")]
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def dev_server() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/admin/login/", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit("the development server did not start")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def temporary_superuser() -> Iterator[str]:
    from django.contrib.auth.models import User

    password = secrets.token_urlsafe(16)
    User.objects.filter(username=USERNAME).delete()
    User.objects.create_superuser(USERNAME, password=password)
    try:
        yield password
    finally:
        User.objects.filter(username=USERNAME).delete()


def shoot(
    base: str, password: str, wanted: list[tuple[str, str]], say: Callable[[str], None]
) -> None:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/admin/login/")
        page.fill("#id_username", USERNAME)
        page.fill("#id_password", password)
        page.click("input[type=submit]")
        page.wait_for_selector("#user-tools")
        for name, path in wanted:
            response = page.goto(f"{base}{path}")
            page.wait_for_load_state("networkidle")
            if response is None or response.status != 200 or "Traceback" in page.content():
                raise SystemExit(f"{name}: {path} answered {response and response.status}")
            page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
            say(f"  {name:<18} {path}")
        browser.close()


def main() -> None:
    import django

    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install chromium (or set CHROMIUM=…)")
    django.setup()
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # ORM calls beside Playwright's loop
    wanted = pages()
    print(f"Saving {len(wanted)} screenshots to {OUT.relative_to(REPO)}/ ...")
    with temporary_superuser() as password, dev_server() as base:
        shoot(base, password, wanted, print)
    print("Done.")


if __name__ == "__main__":
    main()
