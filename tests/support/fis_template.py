"""A group's FIS experiment template as the stacks synthesize it, for tests that start the group's experiment."""

from __future__ import annotations


def create_stack_template(fis, group: str, role_arn: str, name: str) -> str:
    """A group's FIS experiment template as the stacks synthesize it
    (modules/interruption_events/fire_drill.py): one ``aws:ec2:send-spot-instance-interruptions`` action on COUNT(1) running instances tagged with the group,
    a two-minute notice. Returns the template id."""
    return fis.create_experiment_template(
        clientToken="stack", description=f"spotkit: interrupt COUNT(1) spot instance(s) of {group} (PT2M notice)",
        roleArn=role_arn, stopConditions=[{"source": "none"}],
        actions={"interrupt-spot": {"actionId": "aws:ec2:send-spot-instance-interruptions",
                                    "parameters": {"durationBeforeInterruption": "PT2M"},
                                    "targets": {"SpotInstances": "group-spot-instances"}}},
        targets={"group-spot-instances": {"resourceType": "aws:ec2:spot-instance", "selectionMode": "COUNT(1)",
                                          "resourceTags": {"spotkit:group": group},
                                          "filters": [{"path": "State.Name", "values": ["running"]}]}},
        tags={"Name": name, "spotkit:group": group})["experimentTemplate"]["id"]
