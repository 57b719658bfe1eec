"""bench/synth: `spotkit synth` (all stacks) against a naive app that imports the whole AWS provider
package before synthesizing the same stacks.

spotkit imports only the provider submodules a stack uses (imports inside constructs); the naive app
does what generated cdktf projects often do: import every binding up front. Both run in fresh
processes, alternating, ``--runs`` times each; the median wall time and the peak resident memory of the
process tree (Python + jsii's Node.js) are printed with their ratio.

    python -m bench.synth [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench.proctree import measure

ROOT = Path(__file__).resolve().parents[1]

NAIVE_APP = r"""
import importlib, pkgutil, sys
import cdktn_provider_aws
# The naive way: every binding of the provider, imported before the app runs.
for mod in pkgutil.iter_modules(cdktn_provider_aws.__path__):
    importlib.import_module("cdktn_provider_aws." + mod.name)
from stacks.app import build_app
app, _ = build_app(None, sys.argv[1], {})
app.synth()
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    results: dict[str, list] = {"spotkit synth": [], "naive app": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            results["spotkit synth"].append(measure(
                [sys.executable, "-m", "toolkit.cli.main", "synth", "--out", f"{tmp}/s{i}"], env=env, cwd=tmp))
            results["naive app"].append(measure([sys.executable, "-c", NAIVE_APP, f"{tmp}/n{i}"], env=env, cwd=tmp))
        from stacks.registry import STACKS

        stacks = len(STACKS)
    print(f"bench/synth: {stacks} stacks, {args.runs} runs each (median time, max peak RSS of the process tree)")
    rows = {}
    for name, runs in results.items():
        t = statistics.median(r.seconds for r in runs)
        m = max(r.peak_rss_mib for r in runs)
        rows[name] = (t, m)
        print(f"  {name:14s} {t:7.2f} s   {m:8.1f} MiB")
    (ts, ms), (tn, mn) = rows["spotkit synth"], rows["naive app"]
    print(f"  ratio (naive / spotkit): time {tn / ts:.2f}x, memory {mn / ms:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
