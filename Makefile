# The README's commands. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: screenshots demo demo-telco test lint typecheck importlint pytest serve worker beat bench bench-api bench-smtp-sink clean-demo help

help:
	@echo "make demo    - load the demo shop (UCI Online Retail) and run the retention cycle on the embedded SQLite default"
	@echo "make demo-telco - the second example (telco + CDNOW) in var/telco.sqlite3"
	@echo "make test    - lint (ruff), types (mypy), layer contracts (import-linter) and the test suite"
	@echo "make serve   - run the development server (admin at http://127.0.0.1:8000/admin/)"
	@echo "make worker  - run a Celery worker (needs REDIS_URL)"
	@echo "make beat    - run Celery beat (needs REDIS_URL)"
	@echo "make bench   - every benchmark in bench/ at a quick size (minutes), then one summary table (SIZE=full: full sizes, hours; PostgreSQL server of DATABASE_URL, one database <BENCH_DB_PREFIX>_<bench> each; REDIS_URL)"
	@echo "make screenshots - after make demo: regenerate docs/screenshots/ in headless Chromium"
	@echo "make bench-smtp-sink - install Postfix's smtp-sink (Debian, root), the benches' SMTP server: its daemon is not configured or started"
	@echo "make bench-api - load-test the responses API under gunicorn (DATABASE_URL=postgres://…; BENCH_SECONDS=60)"

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# The demo sends at any hour: quiet hours (CAMPAIGN_QUIET_HOURS) would otherwise hold the
# emails back whenever it runs at night in the customers' time zone.
# SMS go to var/outbox/sms.jsonl instead of the console; the shop sells in pounds (GBP).
demo: $(STAMP)
	$(PY) manage.py migrate --noinput -v 0
	RETENTION_CURRENCY=GBP CAMPAIGN_QUIET_HOURS_CHANNELS= SMS_BACKEND=file $(PY) manage.py retention_cycle --sources demo/sources.json

# The second example (a label-attribute business): IBM telco + CDNOW, in its own SQLite file.
TELCO_DB := sqlite:///$(CURDIR)/var/telco.sqlite3
demo-telco: $(STAMP)
	DATABASE_URL=$(TELCO_DB) $(PY) manage.py migrate --noinput -v 0
	DATABASE_URL=$(TELCO_DB) RETENTION_CURRENCY=USD CAMPAIGN_QUIET_HOURS_CHANNELS= SMS_BACKEND=file $(PY) manage.py retention_cycle --sources demo/telco.json

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy common retention customers scoring campaigns demo

importlint: $(STAMP)
	$(VENV)/bin/lint-imports

pytest: $(STAMP)
	$(VENV)/bin/pytest

test: lint typecheck importlint pytest

# Amounts in pounds by default, as `make demo` loads them (the demo shop sells in GBP); set
# RETENTION_CURRENCY for data in another currency (e.g. USD for `make demo-telco`'s CDNOW orders).
serve: $(STAMP)
	$(PY) manage.py migrate --noinput -v 0
	@echo "Admin: http://127.0.0.1:8000/admin/  (create a login with: $(PY) manage.py createsuperuser)"
	@echo "API docs: http://127.0.0.1:8000/api/docs/"
	@echo "Amounts in $${RETENTION_CURRENCY:-GBP} (RETENTION_CURRENCY)"
	RETENTION_CURRENCY=$${RETENTION_CURRENCY:-GBP} $(PY) manage.py runserver 127.0.0.1:8000

worker: $(STAMP)
	$(VENV)/bin/celery -A retention worker --loglevel=INFO

beat: $(STAMP)
	$(VENV)/bin/celery -A retention beat --loglevel=INFO

# Every benchmark, then one summary table (bench/run_all.py; docs/scaling.md "Benchmarks").
# SIZE=full: the full sizes (hours). Each benchmark empties its own database
# <BENCH_DB_PREFIX>_<bench> (prefix retention_bench) on the server of DATABASE_URL.
SIZE ?= quick
bench: $(STAMP)
	$(PY) bench/run_all.py --size $(SIZE)

screenshots: $(STAMP)
	RETENTION_CURRENCY=$${RETENTION_CURRENCY:-GBP} $(PY) docs/screenshots.py
# 50 concurrent clients against gunicorn with production settings; BENCH_SECONDS per scenario.
BENCH_SECONDS ?= 60
bench-api: $(STAMP)
	$(PY) bench/api_load.py --seconds $(BENCH_SECONDS)

# Postfix's smtp-sink, the benches' SMTP server when installed (bench/_smtp_sink.py): Debian's
# postfix package with "No configuration", so no mail system is configured or started.
bench-smtp-sink:
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postfix

clean-demo:
	rm -f var/retention.sqlite3 var/retention.sqlite3-wal var/retention.sqlite3-shm
	rm -f var/telco.sqlite3 var/telco.sqlite3-wal var/telco.sqlite3-shm
