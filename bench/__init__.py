"""Benchmarks: each prints figures for spotkit and a baseline measured in the same run, and the ratio."""
