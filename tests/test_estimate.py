"""The expected time printed before a distillation (d4m.estimate): robust to a preempted timing, never '0.0/s'."""

import time

from d4m.estimate import _rate, _timed, expected_line


def test_timed_keeps_the_fastest_call_so_one_preempted_call_does_not_stand_for_the_run():
    calls = []

    def fn():
        calls.append(None)
        if len(calls) == 2:  # the first timed call is "preempted" by another job
            time.sleep(0.2)

    assert _timed(fn) < 0.1
    assert len(calls) == 4  # a warm-up and three timed calls


def test_slow_rates_keep_their_digits():
    assert _rate(1 / 24.0) == "0.0417"
    assert _rate(4.171) == "4.17"
    assert _rate(417.2) == "417"
    line = expected_line({"synthesis": 100}, {"synthesis": 24.0})
    assert "0.0417/s" in line and "40 min" in line and "0.0/s" not in line
