"""Plan/apply timing of the training stack against the local target (moto), in one run.

    .venv/bin/python -m bench.plan_apply

Starts its own emulator in a temporary project, then times: synthesis + init + plan (``spotkit plan``),
apply of the saved plan, a second plan with nothing to change, and destroy. Prints seconds and each step
as a ratio of the no-change plan (the baseline: what every CI run pays at least).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from click.testing import CliRunner


def main() -> int:
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    os.environ.setdefault("SPOTKIT_PROVIDER_MIRROR", "auto")
    from tests.support.network import free_port
    from toolkit.cli.main import cli
    from toolkit.local import emulator

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / ".spotkit"
        os.environ["SPOTKIT_PROJECT_DIR"] = str(project)
        emulator.start(project, port=free_port())
        timings: dict[str, float] = {}
        try:
            for step, args, code in [
                ("plan (synth+init+plan)", ["plan", "training", "--target", "local"], 0),
                ("apply (saved plan)", ["apply", "training", "--target", "local", "--yes",
                                        "--plan", str(project / "local" / "training" / "tfplan")], 0),
                # moto does not round-trip a few attributes, so this re-plan shows in-place changes (exit 2)
                ("re-plan after apply", ["plan", "training", "--target", "local", "--detailed-exitcode"], 2),
                ("destroy", ["destroy", "training", "--target", "local", "--yes", "--allow-data-loss"], 0),
            ]:
                start = time.monotonic()
                result = CliRunner().invoke(cli, args)
                timings[step] = time.monotonic() - start
                print(f"  {step}: {timings[step]:.1f} s", file=sys.stderr, flush=True)
                if result.exit_code != code:
                    print(result.output, file=sys.stderr)
                    print(f"{step}: exit {result.exit_code}", file=sys.stderr)
                    return 1
        finally:
            emulator.stop(project)
    base = timings["re-plan after apply"]
    print(f"training stack, local target, {os.cpu_count()} cores")
    for step, seconds in timings.items():
        print(f"  {step:26s} {seconds:7.1f} s   x{seconds / base:.2f} of the re-plan")
    return 0


if __name__ == "__main__":
    sys.exit(main())
