"""Backoff and Resume: plain values, checked without a loop or a clock."""

from __future__ import annotations

import itertools

import pytest

from anyio_rsocket.protocol.policy import Backoff, Resume


def test_backoff_grows_by_the_multiplier_up_to_the_maximum() -> None:
    backoff = Backoff(initial=0.1, maximum=1.0, jitter=0.0)
    assert [round(backoff.delay(n), 6) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_backoff_jitter_moves_each_delay_within_its_share() -> None:
    backoff = Backoff(initial=1.0, maximum=1.0, jitter=0.2)
    assert backoff.delay(0, 0.0) == pytest.approx(0.8)
    assert backoff.delay(0, 0.5) == pytest.approx(1.0)
    assert backoff.delay(0, 0.999999) == pytest.approx(1.2, abs=1e-5)


def test_backoff_delays_stop_after_max_attempts() -> None:
    backoff = Backoff(initial=0.1, maximum=0.4, max_attempts=3, jitter=0.0)
    assert [round(d, 6) for d in backoff.delays(lambda: 0.5)] == [0.1, 0.2, 0.4]


def test_backoff_without_max_attempts_never_ends_and_stays_bounded() -> None:
    backoff = Backoff(initial=0.1, maximum=5.0)
    delays = list(itertools.islice(backoff.delays(lambda: 0.999), 200))
    assert len(delays) == 200 and max(delays) <= 5.0 * 1.2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0, "maximum": 1},
        {"initial": 2, "maximum": 1},
        {"initial": 1, "maximum": 1, "multiplier": 0.5},
        {"initial": 1, "maximum": 1, "jitter": 1.5},
        {"initial": 1, "maximum": 1, "max_attempts": 0},
    ],
)
def test_backoff_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_resume_draws_a_fresh_unguessable_token_by_default() -> None:
    first, second = Resume(), Resume(session_duration=5.0)
    assert first.token is not None and len(first.token) == 16
    assert first.token != second.token
    assert Resume(token=b"mine").token == b"mine"


def test_resume_defaults_and_validation() -> None:
    resume = Resume(session_duration=60.0, store_size=1 << 20, retry=Backoff(initial=0.05, maximum=10.0))
    assert resume.store_size == 1 << 20 and resume.retry.initial == 0.05
    with pytest.raises(ValueError):
        Resume(session_duration=0)
    with pytest.raises(ValueError):
        Resume(store_size=0)
    with pytest.raises(ValueError):
        Resume(token=b"")
