"""What the benchmarks print beside their figures: the CPU time stolen while a step ran, the
SMTP server they measured with."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from _machine import cpu_counters, steal_share


def test_the_share_stolen_is_the_stolen_ticks_over_all_ticks() -> None:
    assert steal_share((1_000, 10), (1_400, 110)) == pytest.approx(0.25)
    assert steal_share((1_000, 10), (1_400, 10)) == 0.0


def test_no_share_without_two_readings_that_moved() -> None:
    assert steal_share(None, (1_400, 110)) is None
    assert steal_share((1_000, 10), None) is None
    assert steal_share((1_000, 10), (1_000, 10)) is None


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="no /proc/stat (not Linux)")
def test_the_counters_come_from_proc_stat_and_grow() -> None:
    first = cpu_counters()
    sum(range(2_000_000))  # some CPU time passes
    second = cpu_counters()
    assert first is not None and second is not None
    total, stolen = second
    assert 0 <= stolen <= total
    assert second[0] > first[0] and second[1] >= first[1]
    share = steal_share(first, second)
    assert share is not None and 0.0 <= share <= 1.0


def test_unstolen_seconds_take_the_stolen_share_out() -> None:
    from _machine import unstolen_seconds

    assert unstolen_seconds(40.0, 0.25) == pytest.approx(30.0)
    assert unstolen_seconds(40.0, 0.0) == 40.0
    assert unstolen_seconds(40.0, None) is None


def test_figures_measured_with_aiosmtpd_say_what_it_costs_and_how_to_avoid_it() -> None:
    from _smtp_sink import smtp_server_note

    assert smtp_server_note("smtp-sink") == ""
    note = smtp_server_note("aiosmtpd")
    assert "same cores as the relay" in note and "make bench-smtp-sink" in note
