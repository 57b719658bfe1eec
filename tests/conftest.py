"""Fixtures shared by every test tier: synthesis (unit), moto server (emulator), terraform (e2e)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


@pytest.fixture(scope="session")
def moto_server():
    """One moto server per test session (per xdist worker); tests that need a clean slate call reset()."""
    from tests.support.moto_server import start_moto_server

    server = start_moto_server()
    yield server
    server.stop()


@pytest.fixture()
def aws(moto_server):
    """A clean emulator for this test."""
    moto_server.reset()
    return moto_server


def pytest_collection_modifyitems(config, items):
    """Mark each test with its tier: unit, synth, emulator or e2e (tests/support/tiers.py; make test-unit)."""
    from tests.support.tiers import tier

    for item in items:
        item.add_marker(tier(item))


def pytest_terminal_summary(terminalreporter):
    """Say how many Terraform-backed tests ran: they skip where terraform or the provider is absent."""
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for outcome in counts:
        for report in terminalreporter.stats.get(outcome, []):
            if "terraform" in getattr(report, "keywords", {}) and getattr(report, "when", "call") in ("call", "setup"):
                if outcome == "skipped" or report.when == "call":
                    counts[outcome] += 1
    terminalreporter.write_line(
        f"terraform-backed tests ran: {counts['passed'] + counts['failed']} "
        f"(ok {counts['passed']}, failing {counts['failed']}, skipped {counts['skipped']})"
    )
