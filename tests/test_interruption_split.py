"""``InterruptionEvents`` split into sub-constructs (modules/interruption_events/) keeps what its users
have. Their deployed stacks: every Terraform address it gave a resource before the split
(tests/fixtures/interruption_events_addresses_8e58d69.json) is still the address of that resource (no
``moved`` block, which checkov cannot parse), so a plan against an existing state changes nothing. Their
code: every name the module had is still importable from it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.interruption_scenarios import SCENARIOS, scenario
from tests.support.tf_validate import needs_terraform, terraform_plan_against

FIXTURE = Path(__file__).parent / "fixtures" / "interruption_events_addresses_8e58d69.json"
OLD = json.loads(FIXTURE.read_text())["addresses"]
_SYNTHESIZED: dict[str, tuple[dict, list[str]]] = {}


def _synthesized(name: str) -> tuple[dict, list[str]]:
    """One synthesis per scenario for the module: (JSON, the construct's addresses now)."""
    if name not in _SYNTHESIZED:
        _SYNTHESIZED[name] = scenario(name)
    return _SYNTHESIZED[name]


def _declared(doc: dict) -> set[str]:
    return {f"{rtype}.{name}" for rtype, blocks in (doc.get("resource") or {}).items() for name in blocks}


# Every name of modules/interruption_events.py at 8e58d69 but the standard library's (json, os, re, ...,
# typing, dataclass): those were nobody's API.
OLD_NAMES = (
    "CHECKPOINT_DOCUMENT", "Construct", "DEFAULT_CHECKPOINT_COMMAND", "DEFAULT_MAXIMUM_CONCURRENCY",
    "FallbackSettings", "GROUP_TAG", "HANDLER_MODES", "InterruptionEvents", "InterruptionEventsSettings",
    "LAMBDA_HANDLER", "LAMBDA_RUNTIME", "TAG_GROUP", "TAG_NAME", "TAG_REPLACEMENT_REQUESTED",
    "VISIBILITY_TIMEOUT_MULTIPLE", "ValidationError", "_DURATION", "_NAME", "_PRIVATE_STAGINGS", "_SELECTION",
    "_cached_tree_digest", "_remove_private_stagings", "_tree_digest", "build_lambda_source", "events", "key_arn",
    "lambda_cache_root", "lambda_source_files", "runtime_sources", "validate_fallback", "validate_settings", "warn",
)


def test_every_name_of_the_module_is_still_importable_from_it():
    import spotkit.constructs.interruption_events as module

    assert [n for n in OLD_NAMES if not hasattr(module, n)] == []
    # AND the constants keep their values
    assert (module.GROUP_TAG, module.LAMBDA_RUNTIME, module.CHECKPOINT_DOCUMENT, module.HANDLER_MODES,
            module.VISIBILITY_TIMEOUT_MULTIPLE, module.DEFAULT_MAXIMUM_CONCURRENCY) == (
        "spotkit:group", "python3.12", "AWS-RunShellScript", ("lambda", "queue"), 6, 10)


def test_the_fixture_covers_every_scenario():
    assert sorted(OLD) == sorted(SCENARIOS)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_old_address_is_still_the_resources(name):
    # GIVEN the stack as synthesized now, and the addresses its state holds from before the split
    doc, now = _synthesized(name)
    # THEN the construct declares exactly the old addresses: nothing created, destroyed or moved
    assert sorted(now) == sorted(OLD[name])
    assert set(OLD[name]) <= _declared(doc)
    assert "moved" not in doc


# --- the same with terraform: a plan against a state of the old addresses -------------------------

_STAND_INS = {"partition": "aws", "name": "stand-in", "id": "stand-in", "account_id": "123456789012",
              "arn": "arn:aws:sqs:us-east-1:123456789012:stand-in",
              "url": "https://sqs.us-east-1.amazonaws.com/123456789012/stand-in"}
_REFERENCE = re.compile(r"\$\{(?:data\.)?[a-z0-9_]+\.[A-Za-z0-9_-]+\.([a-z_]+)\}")


def _addresses_only(doc: dict, keep: set[str]) -> dict:
    """``doc`` with only the resources at ``keep``, each ignoring its arguments
    (``ignore_changes = all``): the plan then shows what happens to the addresses alone. References become
    constants of the right form (the state's resources lack the computed attributes, such as ``arn``)."""

    def stand_in(m: re.Match) -> str:
        return "us-east-1" if m.group(0).startswith("${data.aws_region.") else _STAND_INS[m.group(1)]

    resources: dict[str, dict] = {}
    for rtype, blocks in doc["resource"].items():
        for name, body in blocks.items():
            if f"{rtype}.{name}" in keep:
                body = json.loads(_REFERENCE.sub(stand_in, json.dumps(body)))
                resources.setdefault(rtype, {})[name] = {**body, "lifecycle": {"ignore_changes": "all"}}
    return {"terraform": doc["terraform"], "resource": resources,
            "provider": {"aws": [{"region": "us-east-1", "access_key": "stand-in", "secret_key": "stand-in",
                                  "skip_credentials_validation": True, "skip_requesting_account_id": True,
                                  "skip_metadata_api_check": True, "skip_region_validation": True}]}}


@pytest.mark.terraform
def test_terraform_plans_no_change_against_a_state_of_the_old_addresses(tmp_path):
    # GIVEN ecs_spot (every kind of resource: fallback rules, Lambda, two FIS templates) and a state holding
    # its interruption resources at their addresses from before the split
    needs_terraform()
    doc, now = _synthesized("ecs_spot")
    # WHEN terraform plans the stack as synthesized now against that state
    config = _addresses_only(doc, set(now))
    # (each old resource holds the arguments it has now: the arguments are not under test)
    state = {old: config["resource"].get(old.split(".")[0], {}).get(old.split(".", 1)[1], {})
             for old in OLD["ecs_spot"]}
    plan = terraform_plan_against(config, state, tmp_path / "plan")
    changes = plan.get("resource_changes") or []
    # THEN nothing is created, replaced or destroyed
    assert {tuple(c["change"]["actions"]) for c in changes} == {("no-op",)}, [
        (c["address"], c["change"]["actions"]) for c in changes if c["change"]["actions"] != ["no-op"]]
    # AND each old resource is where it was
    assert not any("previous_address" in c for c in changes)
    assert sorted(c["address"] for c in changes) == sorted(OLD["ecs_spot"]) == sorted(now)
