"""Shared test harness: synthesis helpers, the moto server, free ports."""
