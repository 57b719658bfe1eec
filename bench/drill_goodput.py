"""bench/drill_goodput: what an interruption costs the user, measured by the drill in one run (issue 16).

Runs ``spotkit.rehearsal.drill`` at its defaults (or the flags) three ways on the same seeded schedule:

- **agent**: checkpoint-and-continue with the hand-off (a replacement launched at the notice resumes
  from the final checkpoint);
- **agent, stop, no hand-off**: the agent before issue 16 (checkpoint and stop at the notice, the
  replacement boots after the reclaim);
- **baseline**: what a user writes without spotkit (periodic checkpoints, restart after the reclaim).

Prints wall time, overhead over the uninterrupted compute (steps x step time), overhead and idle seconds
per interruption, steps lost and goodput, checks the targets (agent overhead per interruption <= 1.0 s
and <= 25 % of the baseline's, at most one step lost per interruption, nothing trained twice from one
state), then the per-interruption cost carried to AWS's 120 s notice (``spotkit.rehearsal.goodput``).

    python -m bench.drill_goodput [--seed 7] [--interruptions 3] [--json FILE] [--skip-before]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from spotkit.rehearsal.drill import DrillSettings, run_once
from spotkit.rehearsal.goodput import training_costs

PROJECTIONS = [  # (label, save, restore, boot, rebalance lead)
    ("small model, warm AMI", 5, 10, 60, None),
    ("7B model on EFS", 30, 60, 90, None),
    ("70B model, slow boot", 60, 120, 180, None),
    ("70B model, slow boot, rebalance 2 min ahead", 60, 120, 180, 120),
]


def _row(name: str, run) -> str:
    s = run.summary()
    return (f"| {name} | {s['wall_seconds']:.1f} | {s['overhead_seconds']:.2f} | {s['overhead_per_interruption']:.2f} | "
            f"{s['idle_seconds_per_interruption']:.2f} | {s['steps_lost_total']} ({s['steps_lost_max']} max) | "
            f"{s['goodput']:.0%} |")


def projection_table(margin: float = 15.0, detect: float = 1.0, periodic: float = 1800.0) -> str:
    lines = ["| case (save / restore / boot s) | baseline: idle + lost | agent before (stop): idle | "
             "checkpoint-and-continue + hand-off: idle | replacement standby |",
             "|---|---|---|---|---|"]
    for label, save, restore, boot, lead in PROJECTIONS:
        c = training_costs(save=save, restore=restore, boot=boot, margin=margin, detect=detect, periodic=periodic,
                           rebalance_lead=lead)
        base, stop, cont = c["baseline"], c["stop"], c["checkpoint-and-continue"]
        lines.append(f"| {label} ({save} / {restore} / {boot}) | {base.idle:.0f} + {base.lost:.0f} | {stop.idle:.0f} | "
                     f"{cont.idle:.0f} | {cont.standby:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.drill_goodput", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=DrillSettings.seed)
    p.add_argument("--interruptions", type=int, default=DrillSettings.interruptions)
    p.add_argument("--rebalance-lead", type=float)
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--skip-before", action="store_true", help="do not run the stop/no-hand-off agent")
    args = p.parse_args(argv)
    settings = DrillSettings(seed=args.seed, interruptions=args.interruptions, rebalance_lead=args.rebalance_lead)
    settings.validate()
    print(f"drill defaults: {settings.steps} steps of {settings.step_seconds} s ({settings.compute_seconds:.0f} s of "
          f"compute), {settings.interruptions} interruptions (seed {settings.seed}), notice {settings.notice_seconds} s, "
          f"replacement boot {settings.replacement_seconds} s, checkpoint every {settings.checkpoint_every} steps",
          flush=True)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs["agent"] = run_once("agent", settings, Path(tmp) / "after")
        if not args.skip_before:
            runs["before"] = run_once("agent", replace(settings, notice_policy="stop", handoff=False),
                                      Path(tmp) / "before")
        runs["baseline"] = run_once("baseline", settings, Path(tmp) / "baseline")
    names = {"agent": "agent (checkpoint-and-continue + hand-off)", "before": "agent before (stop, no hand-off)",
             "baseline": "baseline (periodic checkpoints)"}
    print("\n| run | wall s | overhead s | overhead / interruption s | idle / interruption s | steps lost | goodput |")
    print("|---|---|---|---|---|---|---|")
    for key, run in runs.items():
        print(_row(names[key], run))
    agent, base = runs["agent"], runs["baseline"]
    ratio = agent.overhead_per_interruption / base.overhead_per_interruption
    checks = {
        "agent overhead per interruption <= 1.0 s": agent.overhead_per_interruption <= 1.0,
        "agent overhead <= 25 % of the baseline's": ratio <= 0.25,
        "at most one step lost per interruption": all(i.steps_lost <= 1 for i in agent.interruptions),
        "nothing trained twice from one state": not agent.duplicate_resumes()
        and agent.concurrent_training_seconds() == 0 and len(agent.steps_computed_twice()) == agent.steps_lost,
        "same interruptions in every run": len({len(r.interruptions) for r in runs.values()}) == 1,
    }
    print(f"\noverhead ratio agent / baseline: {ratio:.3f}; goodput {agent.goodput:.1%} vs {base.goodput:.1%}")
    for name, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    print("\nper interruption at AWS's 120 s notice (margin 15 s, detection 1 s, baseline checkpoints every 30 min):")
    print(projection_table())
    if args.json:
        args.json.write_text(json.dumps({"settings": {k: v for k, v in settings.__dict__.items()},
                                         **{k: r.summary() for k, r in runs.items()}, "ratio": ratio,
                                         "checks": checks}, indent=2, default=str))
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
