"""One home per contract: tags, notice windows, the drain hook, event detail types and retry settings are
written once (toolkit/runtime/notice.py, toolkit/runtime/interruption/events.py, toolkit/runtime/interruption/retries.py) and every
other file imports them. These tests read the source of toolkit/, modules/ and stacks/ (an AST scan, so
comments and docstrings may still name a tag for the reader) and fail on a second copy."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from spotkit.runtime import notice
from spotkit.runtime.interruption import events
from spotkit.runtime.interruption.retries import SETTINGS, botocore_config

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("toolkit", "modules", "stacks")
NOTICE_HOME = "toolkit/runtime/notice.py"

# Literals that look like a contract but are not one; each with its reason.
TAG_ALLOWED = {
    ("toolkit/runtime/interruption/store.py", "spotkit:journal-check"): "a DynamoDB key of the journal's probe item, not a tag",
}
# (file, what holds the number): 120 that is not a notice window.
NUMBER_ALLOWED = {
    ("toolkit/rehearsal/drill.py", "timeout"): "a bound on joining the drill's threads, not a notice",
    ("toolkit/runbooks/base.py", "wait_attempts"): "waiter attempts of the runbooks",
    ("modules/data_volume.py", "wait_minutes"): "minutes the boot script waits for a volume",
    ("modules/inference_service.py", "LOG_RETENTION_DAYS"): "CloudWatch Logs' allowed retention days",
    ("modules/inference_service.py", "requests_per_target"): "the target-tracking requests per target",
}
BOTOCORE_CONFIG_ALLOWED = {
    "toolkit/runtime/interruption/retries.py": "the home of the retry settings",
    "toolkit/aws.py": "a type annotation under TYPE_CHECKING only",
}


def _sources():
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(), filename=str(path))


SOURCES = list(_sources())


def _docstrings(tree: ast.AST) -> set:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _strings(tree: ast.AST):
    """Every string constant that is not a docstring (f-string parts included)."""
    docs = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node


def _holders(tree: ast.AST) -> dict:
    """id(constant) -> the name it is given to: an assignment target, a field, a keyword argument, or
    ``slice`` for a slice bound (a length, never a time)."""
    owner: dict = {}
    for node in ast.walk(tree):  # slices first: a slice inside an assignment is still a slice
        if isinstance(node, ast.Slice):
            owner.update((id(inner), "slice") for inner in ast.walk(node))
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value = node.target.id, node.value
        elif isinstance(node, ast.keyword) and node.arg:
            name, value = node.arg, node.value
        if name:
            for inner in ast.walk(value):
                owner.setdefault(id(inner), name)
    return owner


def test_no_spotkit_tag_literal_outside_the_tag_contract():
    # GIVEN every non-docstring string of toolkit/, modules/ and stacks/
    found = [f"{path}:{node.lineno}: {node.value[:70]!r}" for path, tree in SOURCES if path != NOTICE_HOME
             for node in _strings(tree)
             if re.search(r"spotkit:[a-z]", node.value) and (path, node.value) not in TAG_ALLOWED]
    # THEN none names a spotkit: tag itself: they import spotkit.runtime.notice.TAG_*
    assert found == []


def _bare_120s():
    """(file, holder, line) of every number 120 outside toolkit/runtime/notice.py that is not a slice bound."""
    for path, tree in SOURCES:
        holders = _holders(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and type(node.value) in (int, float) and node.value == 120 \
                    and path != NOTICE_HOME and holders.get(id(node)) != "slice":
                yield path, holders.get(id(node)), node.lineno


def test_no_bare_120_outside_the_notice_contract():
    # GIVEN every number 120 and every "120 s" in a string, outside toolkit/runtime/notice.py
    found = [f"{path}:{line} ({holder})" for path, holder, line in _bare_120s() if (path, holder) not in NUMBER_ALLOWED]
    found += [f"{path}:{node.lineno}: {node.value[:70]!r}" for path, tree in SOURCES if path != NOTICE_HOME
              for node in _strings(tree) if re.search(r"\b120(\.0)? ?(s|seconds)\b|AWS 120\b", node.value)]
    # THEN the spot notice is toolkit.notice.SPOT_NOTICE_SECONDS everywhere
    assert found == []


def test_the_allow_lists_hold_only_what_is_still_there():
    # an entry that matches nothing any more must go, or the list grows into a hiding place
    assert set(TAG_ALLOWED) <= {(path, node.value) for path, tree in SOURCES for node in _strings(tree)}
    assert set(NUMBER_ALLOWED) <= {(path, holder) for path, holder, _line in _bare_120s()}


@pytest.mark.parametrize("value, home", [
    (notice.DRAIN_HOOK_NAME, NOTICE_HOME),
    (notice.TERMINATING_TRANSITION, NOTICE_HOME),
    (notice.DEFAULT_CHECKPOINT_COMMAND, NOTICE_HOME),
] + [(detail_type, "toolkit/runtime/interruption/events.py") for detail_type in events.DETAIL_TYPES])
def test_a_contract_value_is_written_only_in_its_home(value, home):
    found = [f"{path}:{node.lineno}" for path, tree in SOURCES if path != home for node in _strings(tree)
             if node.value == value]
    assert found == []


def test_botocore_configs_are_built_only_from_the_retry_settings():
    found = [f"{path}:{node.lineno}" for path, tree in SOURCES for node in ast.walk(tree)
             if isinstance(node, ast.ImportFrom) and node.module == "botocore.config"
             and path not in BOTOCORE_CONFIG_ALLOWED]
    assert found == []


def _attempts(retries: dict) -> dict:
    """A Config's retries as the table writes them: newer botocore keeps ``max_attempts`` (retries after the
    first call) as ``total_max_attempts`` (every call, the first included)."""
    out = dict(retries)
    if "total_max_attempts" in out:
        out["max_attempts"] = out.pop("total_max_attempts") - 1
    return out


def test_the_retry_settings_reach_the_clients_and_are_not_shared():
    import spotkit.aws

    # GIVEN the CLI's client configs THEN they are the home's settings
    assert _attempts(spotkit.aws.RETRY_CONFIG.retries) == SETTINGS["operator"]["retries"]
    assert (_attempts(spotkit.aws.LOOPBACK_RETRY_CONFIG.retries), spotkit.aws.LOOPBACK_RETRY_CONFIG.connect_timeout) == (
        SETTINGS["loopback"]["retries"], 5)
    # WHEN a built config's retries are changed THEN the table is not
    config = botocore_config("handler", max_pool_connections=18)
    config.retries["max_attempts"] = 1
    assert (SETTINGS["handler"]["retries"], config.max_pool_connections) == (
        {"max_attempts": 8, "mode": "adaptive"}, 18)


@pytest.mark.parametrize("kind", sorted(set(events.DETAIL_TYPE_OF) - {events.FALLBACK_CHECK}))
def test_each_rule_pattern_names_the_source_and_detail_type_the_parser_expects(kind):
    # GIVEN the pattern of a kind, generated from the parser's table
    pattern = events.event_pattern(kind)
    # THEN the parser maps that detail type from that source back to the kind
    (detail_type,), (source,) = pattern["detail-type"], pattern["source"]
    assert events.DETAIL_TYPES[detail_type] == (source, kind)


def _state_change(state: str) -> dict:
    return {"version": "0", "id": "e1", "detail-type": events.DETAIL_TYPE_OF[events.STATE_CHANGE],
            "source": "aws.ec2", "account": "123456789012", "time": "2026-11-29T19:07:00Z", "region": "us-east-1",
            "resources": [], "detail": {"instance-id": "i-0123456789abcdef0", "state": state}}


def test_the_state_change_rule_matches_exactly_the_states_the_parser_acts_on():
    # GIVEN the generated pattern's states
    states = events.event_pattern(events.STATE_CHANGE)["detail"]["state"]
    # THEN each is parsed into an event, and a state outside it is ignored by the parser too
    assert all(events.from_eventbridge(_state_change(state)) for state in states)
    with pytest.raises(events.IgnoreEvent):
        events.from_eventbridge(_state_change("pending"))
    # AND extra filters of a stack are added beside the parser's own
    asg = events.event_pattern(events.LIFECYCLE_TERMINATE, AutoScalingGroupName=["g1"])
    assert asg["detail"] == {"AutoScalingGroupName": ["g1"], "LifecycleTransition": [notice.TERMINATING_TRANSITION]}
