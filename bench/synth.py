"""bench/synth: `spotkit synth` of every stack, cold and cached, against the same stack code on HashiCorp's
cdktf 0.21 (the engine spotkit left for cdktn), in one run.

The baseline is what a user of cdktf would run: the very same ``stacks/`` and ``modules/`` code with
``cdktn`` renamed to ``cdktf`` and cdktn-aws's classes mapped back to cdktf's bindings
(``bench/cdktf_baseline.py``), in a
virtualenv this bench builds once (``bench/.venvs/cdktf-0.21``: cdktf 0.21.0 and
cdktf-cdktf-provider-aws 21.22.1 from PyPI; ``--baseline-python`` to use another). Each contender runs in a
fresh process, alternating, ``--runs`` times; printed: the median wall time, and the peak resident memory
of the whole process tree (Python + jsii's Node.js) and of its largest process.

    python -m bench.synth [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.cdktf_baseline import write_baseline_copy
from bench.proctree import RunStats, measure

ROOT = Path(__file__).resolve().parents[1]
BASELINE_VENV = ROOT / "bench" / ".venvs" / "cdktf-0.21"
BASELINE_PACKAGES = ["cdktf==0.21.0", "cdktf-cdktf-provider-aws==21.22.1", "PyYAML>=6,<7", "click>=8.1,<9",
                     "boto3>=1.34,<2"]  # the stacks import the handler module (its default checkpoint command)

BASELINE_APP = r"""
import sys
from spotkit.stacks.app import build_app
app, _ = build_app(None, sys.argv[1], {})
app.synth()
"""


def baseline_python(explicit: str | None) -> str:
    if explicit:
        return explicit
    python = BASELINE_VENV / "bin" / "python"
    if not python.exists():
        print(f"bench/synth: building the cdktf 0.21 baseline venv in {BASELINE_VENV} (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(BASELINE_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *BASELINE_PACKAGES], check=True)
    return str(python)


def renamed_copy(dest: Path, base_python: str) -> Path:
    """stacks/, modules/ and toolkit/ running on cdktf 0.21 (see bench/cdktf_baseline.py)."""
    import importlib.util

    cdktn_aws = importlib.util.find_spec("cdktn_aws")
    if cdktn_aws is None or not cdktn_aws.submodule_search_locations:
        raise SystemExit("bench/synth: cdktn-aws is not installed here (pip install -e .)")
    site = subprocess.run([base_python, "-c", "import cdktf_cdktf_provider_aws, os; "
                           "print(os.path.dirname(cdktf_cdktf_provider_aws.__file__))"],
                          check=True, capture_output=True, text=True,
                          env={**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}).stdout.strip()
    return write_baseline_copy(ROOT, dest, Path(cdktn_aws.submodule_search_locations[0]), Path(site))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline-python", help="a Python that has cdktf 0.21 and its AWS bindings")
    args = parser.parse_args(argv)
    base_python = baseline_python(args.baseline_python)
    env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    results: dict[str, list[RunStats]] = {"spotkit synth (cold)": [], "spotkit synth (cached)": [],
                                          "cdktf 0.21, same code": []}
    with tempfile.TemporaryDirectory() as tmp:
        copy = renamed_copy(Path(tmp) / "cdktf-src", base_python)
        spotkit_env = env  # the installed spotkit (an editable install in a checkout)
        for i in range(args.runs):
            cache = f"{tmp}/cache{i}"
            cmd = [sys.executable, "-m", "spotkit.cli.main", "synth", "--out", f"{tmp}/s{i}"]
            results["spotkit synth (cold)"].append(measure(cmd, env={**spotkit_env, "SPOTKIT_SYNTH_CACHE": cache}, cwd=tmp))
            results["spotkit synth (cached)"].append(measure(cmd, env={**spotkit_env, "SPOTKIT_SYNTH_CACHE": cache}, cwd=tmp))
            results["cdktf 0.21, same code"].append(measure(
                [base_python, "-c", BASELINE_APP, f"{tmp}/b{i}"], env={**env, "PYTHONPATH": str(copy)}, cwd=tmp))
        from spotkit.stacks.registry import STACKS

        stacks = len(STACKS)
    print(f"bench/synth: {stacks} stacks, {args.runs} runs each, {os.cpu_count()} cores "
          "(median time; max peak RSS of the process tree / of its largest process)")
    rows = {}
    for name, runs in results.items():
        t = statistics.median(r.seconds for r in runs)
        tree = max(r.peak_rss_mib for r in runs)
        largest = max(r.peak_largest_mib for r in runs)
        rows[name] = (t, tree, largest)
        print(f"  {name:24s} {t:7.2f} s   tree {tree:7.1f} MiB   largest {largest:7.1f} MiB")
    (tc, mc, lc), (tk, _mk, _lk), (tb, mb, lb) = rows.values()
    print(f"  cold vs cdktf 0.21: time {tb / tc:.2f}x faster; tree memory {mc / mb:.2f}x, largest process "
          f"{lc / lb:.2f}x of cdktf's")
    print(f"  cached vs cold: {tc / tk:.1f}x faster ({tk:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
