"""The EventBridge rules, each with the queue as its target: six for the warnings AWS sends about the
groups' instances, and with ``fallback`` two for capacity failures and a scheduled one for the return check.
The patterns come from the parser's table (``spotkit.runtime.interruption.events.event_pattern``), so a
rule matches what the handler parses."""

from __future__ import annotations

import json
from typing import Optional, Sequence

from constructs import Construct

from spotkit.constructs.capacity_fallback import FallbackSettings
from spotkit.constructs.addresses import keep_address
from spotkit.runtime.interruption import events  # standard library only: synthesis loads no botocore

TARGET_ID = "spotkit-interruption-queue"


def rule_patterns(groups: Sequence[str]) -> dict[str, dict]:
    """The six rules' event patterns, by rule id. EC2 events carry only an instance id, so EventBridge
    cannot scope them to a group: only the lifecycle action is scoped (by group name)."""
    return {
        "spot-interruption": events.event_pattern(events.SPOT_INTERRUPTION),
        "rebalance": events.event_pattern(events.REBALANCE_RECOMMENDATION),
        "state-change": events.event_pattern(events.STATE_CHANGE),
        "scheduled-change": events.event_pattern(events.SCHEDULED_CHANGE),
        "asg-terminate": events.event_pattern(events.LIFECYCLE_TERMINATE, AutoScalingGroupName=list(groups)),
        "capacity-reservation": events.event_pattern(events.CAPACITY_RESERVATION_INTERRUPTION),
    }


def fallback_patterns(groups: Sequence[str], fallback: Optional[FallbackSettings],
                      placement_clusters: Sequence[str]) -> dict[str, dict]:
    """The capacity rules' event patterns (none without ``fallback``), by rule id."""
    if fallback is None:
        return {}
    patterns = {"launch-failure": events.event_pattern(events.LAUNCH_FAILURE, AutoScalingGroupName=list(groups))}
    if placement_clusters:
        patterns["placement-failure"] = events.event_pattern(events.PLACEMENT_FAILURE,
                                                             clusterArn=list(placement_clusters))
    return patterns


class InterruptionRules(Construct):
    """``rules``: the EventBridge rules by rule id (the patterns', then ``fallback-check``), each sending to
    ``queue_arn``."""

    def __init__(self, scope: Construct, id_: str, *, name: str, groups: Sequence[str], queue_arn: str,
                 fallback: Optional[FallbackSettings] = None, placement_clusters: Sequence[str] = ()):
        super().__init__(scope, id_)
        self.name = name
        self.queue_arn = queue_arn
        self.rules = {}
        patterns = {**rule_patterns(groups), **fallback_patterns(groups, fallback, placement_clusters)}
        for rule_id, pattern in patterns.items():
            self._rule(rule_id, description=f"spotkit {name}: {pattern['detail-type'][0]} -> interruption queue",
                       event_pattern=json.dumps(pattern))
        if fallback is not None:
            # The return check: a scheduled rule whose event (``Scheduled Event``) goes to the queue.
            self._rule("fallback-check", description=f"spotkit {name}: return-to-spot check every "
                                                     f"{fallback.check_every_minutes} min -> interruption queue",
                       schedule_expression=fallback.schedule_expression)

    def _rule(self, rule_id: str, **how) -> None:
        """Rule ``rule_id`` (``how``: its description and its pattern or schedule) and its target."""
        from cdktn_aws.eventbridge import AwsRule as CloudwatchEventRule, AwsTarget as CloudwatchEventTarget

        parent = self.node.scope
        rule = keep_address(CloudwatchEventRule(self, rule_id, name=f"{self.name}-{rule_id}"[:64], **how),
                          parent, f"rule-{rule_id}")
        keep_address(CloudwatchEventTarget(self, f"{rule_id}-target", rule=rule.name, target_id=TARGET_ID,
                                         arn=self.queue_arn), parent, f"target-{rule_id}")
        self.rules[rule_id] = rule
