"""The test tiers, assigned to each collected test by tests/conftest.py from what it uses (markers registered
in pyproject.toml), in the shape of aws-node-termination-handler's three tiers plus synthesis:

- ``e2e``: the ``terraform`` marker (real Terraform runs);
- ``emulator``: the ``aws``/``moto_server`` fixtures, or a fixture or test body that starts an AWS emulator
  (the harness's moto server or ``spotkit local start``'s);
- ``synth``: a module that imports the synthesis engine, the stacks or the constructs at its top level, or a
  test or fixture that runs ``spotkit synth`` (``"synth"`` in an argument list) (seconds per synthesis, jsii's node process);
- ``unit``: everything else (the IMDS, GCP and Azure metadata emulators are in-process fakes: unit).

``make test-unit`` runs ``-m "unit and not slow"``: the quick loop; ``make test`` runs every tier.
"""

from __future__ import annotations

import ast
import functools
import inspect
import re

EMULATOR_FIXTURES = {"aws", "moto_server"}
EMULATOR_STARTS = ("start_moto_server(", "ThreadedMotoServer(", "emulator.start(")
SYNTH_IMPORTS = ("cdktn", "stacks", "modules", "tests.support.synth", "spotkit.synth")
SYNTH_ARGV = re.compile(r"""[\[,]\s*["']synth["']\s*[,\]]""")  # "synth" as a command-line argument


@functools.lru_cache(maxsize=None)
def _source(func) -> str:
    try:
        return inspect.getsource(func)
    except (OSError, TypeError):
        return ""


def _starts_an_emulator(func) -> bool:
    return any(call in _source(func) for call in EMULATOR_STARTS)


@functools.lru_cache(maxsize=None)
def _synthesizes(module) -> bool:
    """The module imports the engine, the stacks or the constructs at its top level."""
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError, SyntaxError):
        return False
    names = [n.module or "" for n in tree.body if isinstance(n, ast.ImportFrom)]
    names += [a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names]
    return any(name == top or name.startswith(top + ".") for name in names for top in SYNTH_IMPORTS)


def tier(item) -> str:
    """``e2e``, ``emulator``, ``synth`` or ``unit``: the tier of a collected test."""
    if item.get_closest_marker("terraform"):
        return "e2e"
    names = set(getattr(item, "fixturenames", ()))
    if names & EMULATOR_FIXTURES:
        return "emulator"
    fixtures = getattr(item, "_fixtureinfo", None)
    defs = [d for name in names for d in (fixtures.name2fixturedefs.get(name, ()) if fixtures else ())]
    if any(_starts_an_emulator(d.func) for d in defs) or _starts_an_emulator(getattr(item, "function", None)):
        return "emulator"
    runs_synth = any(SYNTH_ARGV.search(_source(f)) for f in [getattr(item, "function", None), *(d.func for d in defs)])
    if _synthesizes(getattr(item, "module", None)) or runs_synth:
        return "synth"
    return "unit"
