"""The stop request: the first signal asks, the second interrupts, except while a file is being written."""

from __future__ import annotations

import os
import signal

import pytest

from bench.stop import StopRequest


def test_first_signal_requests_a_stop_and_the_second_interrupts():
    stop = StopRequest()
    with stop.handling_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signal == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) != stop._handle  # handlers restored


def test_sighup_is_a_stop_request_like_sigterm():
    stop = StopRequest()
    with stop.handling_signals():
        os.kill(os.getpid(), signal.SIGHUP)
    assert stop.signal == signal.SIGHUP


def test_a_second_signal_waits_for_the_critical_section_to_end():
    stop = StopRequest()
    finished = []
    with stop.handling_signals(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        with stop.critical():
            os.kill(os.getpid(), signal.SIGINT)
            finished.append("the write")
    assert finished == ["the write"]


def test_nested_handling_keeps_one_handler_and_a_direct_request_needs_no_signal():
    stop = StopRequest()
    with stop.handling_signals(), stop.handling_signals():
        assert signal.getsignal(signal.SIGINT) == stop._handle
    stop.request(signal.SIGTERM)
    stop.request(signal.SIGINT)
    assert stop.signal == signal.SIGTERM  # the first request is the one that counts
