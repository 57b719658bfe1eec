"""``spotkit simulate``: replay real spot capacity traces against a stack's synthesized policy.

- ``traces``: the trace format (``skypilot-org/spot-traces``) and its reader.
- ``policy``: the stack's policy from its ``cdk.tf.json``, and the compared policies.
- ``engine``: the tick-by-tick replay; the fallback decides with the handler's own code
  (``spotkit.runtime.interruption.fallback.decide_fall_back`` / ``decide_return``).
- ``report``: a run over several traces, its text, JSON and plot.

See docs/simulate.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from spotkit.errors import ToolkitError


def simulate_stack(stack: str, trace_dirs: Sequence[str], config: Mapping[str, Any], *,
                   tf_json: Optional[str] = None, outdir: str = "cdktf.out",
                   zones: Optional[list[str]] = None, keep_series: bool = False) -> dict:
    """Read the traces, the stack's synthesized policy (``tf_json``, else synthesize into ``outdir``),
    and run the comparison; return the report (``spotkit.simulate.report.run``)."""
    from spotkit import synth
    from spotkit.simulate import policy, report, traces

    if not trace_dirs:
        raise ToolkitError("no trace given", hint=f"pass one or more trace directories: spotkit simulate {stack} "
                                                  "--trace tests/fixtures/traces/aws-v100-16node-2023-08")
    sets = [traces.load_trace_dir(d) for d in trace_dirs]   # bad traces fail before the synthesis
    policy.settings(config)
    if tf_json is None:
        from spotkit.stacks import registry

        registry.get(stack)
        tf_json = str(synth.synthesize([stack], outdir, {k: v for k, v in config.items() if k != "simulate"})[0])
    doc = synth.load_tf_json(Path(tf_json))
    sp = policy.read_stack_policy(doc, stack, config)
    return report.run(sp, sets, config, zones, keep_series=keep_series)
