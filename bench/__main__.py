"""Run every benchmark in turn: ``python -m bench`` (``make bench``)."""

import runpy
import sys

BENCHES = ["bench.synth", "bench.interruptions_agent", "bench.clouds_agent", "bench.interruptions_handler",
           "bench.runbooks", "bench.plan_apply", "bench.drill_goodput", "bench.serve_drill", "bench.check",
           "bench.simulate"]

if __name__ == "__main__":
    for name in BENCHES:
        print(f"\n### {name}", flush=True)
        sys.argv = [name]
        try:
            runpy.run_module(name, run_name="__main__")
        except SystemExit as exc:
            if exc.code not in (0, None):
                print(f"{name} exited {exc.code}")
