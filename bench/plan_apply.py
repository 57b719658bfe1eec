"""bench/plan_apply: what a CI plan costs with spotkit against Terraform alone, training stack, local target.

    .venv/bin/python -m bench.plan_apply [--pairs 5]

Starts its own emulator in a temporary project, then, in one run:

1. ``spotkit plan training --target local`` cold (no synthesis cache, no init yet);
2. ``--pairs`` alternating pairs on the unchanged stack: ``spotkit plan`` against ``terraform plan -out``
   in the same working directory with the same CLI config (what a user running Terraform by hand pays);
3. the same on a changed stack (a config override changes the group size each time): ``spotkit plan``
   against what that change costs by hand, ``spotkit synth`` + ``terraform plan -out``;
4. apply of the saved plan, a re-plan after apply, and destroy.

Prints each median with the ratio against its baseline (targets: 1.15x or less for both plan cases).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path



def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    os.environ.setdefault("SPOTKIT_PROVIDER_MIRROR", "auto")
    from tests.support.network import free_port
    from spotkit.rehearsal.local import emulator

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / ".spotkit"
        env.update(SPOTKIT_PROJECT_DIR=str(project), SPOTKIT_SYNTH_CACHE=str(Path(tmp) / "synth-cache"))
        os.environ.update(SPOTKIT_PROJECT_DIR=str(project), SPOTKIT_SYNTH_CACHE=str(Path(tmp) / "synth-cache"))
        emulator.start(project, port=free_port())
        workdir = project / "local" / "training"
        tf_env = {**env, "TF_CLI_CONFIG_FILE": str(project / "terraformrc"), "TF_IN_AUTOMATION": "1",
                  "CHECKPOINT_DISABLE": "1"}
        spotkit = [sys.executable, "-m", "spotkit.cli.main"]

        def run(cmd: list[str], cwd: str | Path = tmp, ok=(0,), extra_env: dict | None = None) -> None:
            res = subprocess.run(cmd, cwd=cwd, env={**env, **(extra_env or {})}, capture_output=True, text=True)
            if res.returncode not in ok:
                raise SystemExit(f"{' '.join(map(str, cmd))} exited {res.returncode}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")

        def terraform_plan() -> None:
            res = subprocess.run(["terraform", "plan", "-input=false", "-no-color", "-out=baseline.tfplan",
                                  "-parallelism=20"], cwd=workdir, env=tf_env, capture_output=True, text=True)
            if res.returncode != 0:
                raise SystemExit(f"terraform plan failed:\n{res.stderr[-3000:]}")

        config = Path(tmp) / "change.yaml"
        timings: dict[str, list[float]] = {k: [] for k in (
            "spotkit plan, unchanged", "terraform plan, same dir", "spotkit plan, changed stack",
            "synth + terraform plan, changed")}
        try:
            cold = _time(lambda: run([*spotkit, "plan", "training", "--target", "local"]))
            print(f"  cold spotkit plan (synth + init + plan): {cold:.1f} s", file=sys.stderr, flush=True)
            for i in range(args.pairs):
                timings["spotkit plan, unchanged"].append(_time(lambda: run([*spotkit, "plan", "training", "--target", "local"])))
                timings["terraform plan, same dir"].append(_time(terraform_plan))
                config.write_text(f"training: {{group: {{max_size: {10 + 2 * i}}}}}\n")
                timings["spotkit plan, changed stack"].append(_time(lambda: run(
                    [*spotkit, "--config", str(config), "plan", "training", "--target", "local"])))
                config.write_text(f"training: {{group: {{max_size: {11 + 2 * i}}}}}\n")

                def by_hand() -> None:  # what the same change costs without spotkit: synthesize, copy, plan
                    run([*spotkit, "--config", str(config), "synth", "training", "--no-cache", "--out", str(Path(tmp) / "hand")])
                    terraform_plan()
                timings["synth + terraform plan, changed"].append(_time(by_hand))
                print(f"  pair {i + 1}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in timings.items()),
                      file=sys.stderr, flush=True)
            plan_file = workdir / "tfplan"
            run([*spotkit, "plan", "training", "--target", "local"])
            apply_s = _time(lambda: run([*spotkit, "apply", "training", "--target", "local", "--yes", "--plan", str(plan_file)]))
            replan_s = _time(lambda: run([*spotkit, "plan", "training", "--target", "local", "--detailed-exitcode"], ok=(0, 2)))
            destroy_s = _time(lambda: run([*spotkit, "destroy", "training", "--target", "local", "--yes", "--allow-data-loss"]))
        finally:
            emulator.stop(project)
    med = {k: statistics.median(v) for k, v in timings.items()}
    print(f"bench/plan_apply: training stack, local target, {args.pairs} pairs, {os.cpu_count()} cores (medians)")
    print(f"  cold spotkit plan (synth + init + plan)  {cold:7.1f} s")
    for mine, base in (("spotkit plan, unchanged", "terraform plan, same dir"),
                       ("spotkit plan, changed stack", "synth + terraform plan, changed")):
        print(f"  {mine:32s} {med[mine]:7.1f} s   against {base}: {med[base]:.1f} s   ratio {med[mine] / med[base]:.2f}x")
    print(f"  apply (saved plan) {apply_s:.1f} s, re-plan after apply {replan_s:.1f} s, destroy {destroy_s:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
