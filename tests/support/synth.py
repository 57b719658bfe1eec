"""Synthesis helpers. cdktn's ``Testing.to_have_resource_with_properties`` returns a bool: these wrap
it so a failed match raises with the synthesized resources shown, and give typed access to the JSON."""

from __future__ import annotations

import json
import os
from typing import Any, Callable

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from cdktn import App, Testing  # noqa: E402

from spotkit.stacks.base import SpotkitStack, StackConfig  # noqa: E402


def synth_json(stack) -> dict:
    return json.loads(Testing.synth(stack))


def synth_construct(build: Callable[[SpotkitStack], Any], region: str = "us-east-1") -> tuple[dict, Any]:
    """GIVEN a fresh stack with the AWS provider, WHEN ``build(stack)`` adds constructs, return
    (synthesized JSON, what build returned)."""
    app = Testing.app()
    stack = SpotkitStack(app, "test", StackConfig(name="test", region=region))
    built = build(stack)
    return synth_json(stack), built


def build_stack(stack_cls, config) -> tuple[dict, Any]:
    app = App(outdir=os.environ.get("SPOTKIT_TEST_OUTDIR", "/tmp/spotkit-test-out"))
    stack = stack_cls(app, "stack", config)
    return synth_json(stack), stack


def resources(doc: dict, rtype: str) -> dict[str, dict]:
    return (doc.get("resource") or {}).get(rtype) or {}


def data_sources(doc: dict, dtype: str) -> dict[str, dict]:
    return (doc.get("data") or {}).get(dtype) or {}


def one(doc: dict, rtype: str) -> dict:
    found = resources(doc, rtype)
    assert len(found) == 1, f"expected exactly one {rtype}, found {len(found)}: {sorted(found)}"
    return next(iter(found.values()))


def assert_resource_with_properties(stack_or_json, rtype: str, properties: dict) -> None:
    """Assert (not merely evaluate) cdktn's matcher; show the candidates when it fails."""
    synthesized = stack_or_json if isinstance(stack_or_json, str) else json.dumps(stack_or_json)
    matched = Testing.to_have_resource_with_properties(synthesized, rtype, properties)
    assert matched is True, (
        f"no {rtype} with properties {json.dumps(properties, indent=1)}; synthesized {rtype}:\n"
        + json.dumps(resources(json.loads(synthesized), rtype), indent=1)[:4000]
    )


def local_value(doc: dict, prefix: str) -> str:
    """The value of the first ``locals`` entry whose name starts with ``prefix`` (user data scripts)."""
    for name, value in (doc.get("locals") or {}).items():
        if name.startswith(prefix):
            return value
    raise AssertionError(f"no local starting with {prefix!r}; locals are {sorted(doc.get('locals') or {})}")
