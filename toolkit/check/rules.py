"""Spot-safety rules over a normalized resource graph, written from the Terraform AWS provider schema
(hashicorp/aws 5.x), not from spotkit's own constructs, so they judge any configuration.

Each rule has a stable id (SPOT001...), a severity (error | warning | info), a title, a fix, and a
function ``graph -> [(resource, message)]``. A rule never fires on a value it cannot know (an
unresolved ``${...}`` expression or a value computed at apply time): it stays silent rather than guess.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable, Iterable

from toolkit.check.loader import Resource, ResourceGraph, as_list, block, blocks, is_unresolved, unknown_block
from toolkit.k8s import karpenter

SEVERITIES = ("error", "warning", "info")
SPOT_NOTICE_SECONDS = 120  # the spot interruption notice
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
INTERRUPTION_DETAIL_TYPE = "EC2 Spot Instance Interruption Warning"
ROOT_DEVICES = ("/dev/xvda", "/dev/sda1", "/dev/sda", "/dev/nvme0n1", "/dev/xvda1")
ASG = "aws_autoscaling_group"
SPOT_FLEET, EC2_FLEET, SPOT_REQUEST = "aws_spot_fleet_request", "aws_ec2_fleet", "aws_spot_instance_request"
TARGET_GROUPS = ("aws_lb_target_group", "aws_alb_target_group")
LAUNCH_TEMPLATES = ("aws_launch_template",)
DURABLE_STORAGE = ("aws_efs_file_system", "aws_efs_mount_target", "aws_fsx_lustre_file_system",
                   "aws_fsx_openzfs_file_system", "aws_fsx_ontap_file_system", "aws_s3_bucket", "aws_ebs_volume")

Hit = tuple[Resource, str]
SPOT, GENERAL = "spot", "general"  # finding categories: spot risks, and general (security) findings
DOCS = {
    "spot_best": "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-best-practices.html",
    "allocation": "https://docs.aws.amazon.com/autoscaling/ec2/userguide/allocation-strategies.html",
    "rebalance": "https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-capacity-rebalancing.html",
    "hooks": "https://docs.aws.amazon.com/autoscaling/ec2/userguide/lifecycle-hooks.html",
    "dereg": "https://docs.aws.amazon.com/elasticloadbalancing/latest/application/edit-target-group-attributes.html#deregistration-delay",
    "imds": "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html",
    "dlm": "https://docs.aws.amazon.com/ebs/latest/userguide/snapshot-lifecycle.html",
    "ecs_draining": "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/enable-managed-instance-draining.html",
    "ecs_providers": "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/cluster-capacity-providers.html",
    "notices": "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html",
    "interruptions": "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-interruptions.html",
    "max_price": "https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_InstancesDistribution.html",
    "karpenter_capacity": "https://karpenter.sh/docs/concepts/nodepools/#capacity-type",
    "karpenter_disruption": "https://karpenter.sh/docs/concepts/disruption/#consolidation",
}


@dataclass(frozen=True)
class Undecided:
    """A rule could not decide: a value it needs is unknown before apply (a variable without a
    default, a function call, a module output...). Reported, never counted as a failure."""
    resource: Resource
    message: str


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    title: str
    fix: str
    check: Callable[[ResourceGraph], Iterable[Hit]]
    doc: str | None = None
    category: str = SPOT
    description: str = ""  # what fires the rule, for the rule reference (docs) and SARIF's fullDescription

    @property
    def help_uri(self) -> str | None:
        """The AWS (or Karpenter) page behind the rule's advice."""
        return self.doc


# --- helpers over the provider schema ---------------------------------------------------------------

def _int(value, default=None):
    if value is None or is_unresolved(value):
        return default
    try:
        return int(str(value).strip())
    except ValueError:
        return default


def _bool(value, default=None):
    if value is None or is_unresolved(value):
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() == "true"


def launch_templates_of(graph: ResourceGraph, group: Resource) -> list[Resource]:
    """Launch templates the group references (``launch_template`` is on the path in both the plain
    and the mixed-instances form)."""
    return graph.resolve(group, "launch_template", *LAUNCH_TEMPLATES)


def spot_share(group: Resource, graph: ResourceGraph) -> bool | None:
    """True if the group launches spot instances, False if not, None if it cannot be told."""
    if group.address in graph.assume_spot:
        return True
    if unknown_block(group.values, "mixed_instances_policy", "instances_distribution"):
        return None  # a dynamic mixed_instances_policy over a collection not known before apply
    mip = block(group.values, "mixed_instances_policy")
    if mip:
        pct = block(mip, "instances_distribution").get("on_demand_percentage_above_base_capacity")
        if pct is None:
            return False  # AWS default: 100% on-demand above the base
        value = _int(pct)
        return None if value is None else value < 100
    for lt in launch_templates_of(graph, group):
        if unknown_block(lt.values, "instance_market_options"):
            return None
        market = block(lt.values, "instance_market_options").get("market_type")
        if market is not None:
            return None if is_unresolved(market) else str(market) == "spot"
    for lc in graph.resolve(group, "launch_configuration", "aws_launch_configuration"):
        if lc.values.get("spot_price") not in (None, ""):
            return True
    return False


def spot_groups(graph: ResourceGraph) -> list[Resource]:
    return [g for g in graph.of_type(ASG) if spot_share(g, graph)]


def spot_node_groups(graph: ResourceGraph) -> list[Resource]:
    """EKS managed node groups on spot (EKS itself rebalances and drains them, so only the type and
    zone rules apply)."""
    return [n for n in graph.of_type("aws_eks_node_group")
            if str(n.values.get("capacity_type", "ON_DEMAND")) == "SPOT" or n.address in graph.assume_spot]


def fleet_is_spot(fleet: Resource, graph: ResourceGraph) -> bool | None:
    """True if a spot fleet / EC2 fleet / spot request launches spot, False if not, None if not known
    before apply."""
    if fleet.address in graph.assume_spot or fleet.type == SPOT_REQUEST:
        return True
    if fleet.type == SPOT_FLEET:  # spot unless the whole target capacity is on-demand
        total, on_demand = fleet.values.get("target_capacity"), fleet.values.get("on_demand_target_capacity")
        if on_demand in (None, 0, "0"):
            return True
        if _int(total) is None or _int(on_demand) is None:
            return None
        return _int(on_demand) < _int(total)
    spec = block(fleet.values, "target_capacity_specification")
    default, spot_target = spec.get("default_target_capacity_type"), spec.get("spot_target_capacity")
    if default == "spot" or (_int(spot_target) or 0) > 0:
        return True
    if is_unresolved(default) or is_unresolved(spot_target) or unknown_block(fleet.values, "target_capacity_specification"):
        return None
    return False


def spot_fleets(graph: ResourceGraph) -> list[Resource]:
    """Spot fleets, EC2 fleets and spot instance requests that launch spot."""
    return [f for f in graph.of_type(SPOT_FLEET, EC2_FLEET, SPOT_REQUEST) if fleet_is_spot(f, graph)]


def spot_capacity(graph: ResourceGraph) -> list[Resource]:
    """Everything that launches spot: groups, node groups, fleets, spot requests and instances, ECS
    services on Fargate Spot, Karpenter NodePools that may launch spot."""
    found = list(spot_groups(graph)) + spot_node_groups(graph) + spot_fleets(graph)
    for svc in graph.of_type("aws_ecs_service"):
        if any(e.get("capacity_provider") == "FARGATE_SPOT" for e in service_strategy(svc, graph)):
            found.append(svc)
    found += [r for r in graph.of_type("aws_instance") if block(r.values, "instance_market_options").get("market_type") == "spot"]
    found += [p for p in graph.of_type(karpenter.NODE_POOL) if "spot" in karpenter.capacity_types(p)]
    return found


def maybe_spot_capacity(graph: ResourceGraph) -> list[Resource]:
    """What may launch spot, when a value that decides it is not known before apply (a group's spot
    share, a node group's capacity_type, a fleet's target capacity type): the engine checks these as
    if they were spot, and reports what fires only then as undecided."""
    found = [g for g in graph.of_type(ASG) if spot_share(g, graph) is None]
    found += [n for n in graph.of_type("aws_eks_node_group") if is_unresolved(n.values.get("capacity_type"))]
    found += [f for f in graph.of_type(SPOT_FLEET, EC2_FLEET) if fleet_is_spot(f, graph) is None]
    return found


def _lt_type(graph: ResourceGraph, source: Resource, attr: str) -> str:
    """The instance type of the launch template ``source`` names through ``attr`` (a placeholder when not known)."""
    for lt in graph.resolve(source, attr, *LAUNCH_TEMPLATES):
        t = lt.values.get("instance_type")
        if isinstance(t, str) and not is_unresolved(t):
            return t
    return "(launch template type)"


def fleet_types(fleet: Resource, graph: ResourceGraph) -> tuple[list[str] | None, bool]:
    """(distinct instance types or None, True when None means "not known before apply" rather than
    attribute-based) of a spot fleet, EC2 fleet or spot instance request."""
    if fleet.type == SPOT_REQUEST:
        t = fleet.values.get("instance_type")
        if t is None:
            return [_lt_type(graph, fleet, "launch_template")], False
        return (None, True) if is_unresolved(t) else ([str(t)], False)
    label = "overrides" if fleet.type == SPOT_FLEET else "override"
    if unknown_block(fleet.values, "launch_specification") or unknown_block(fleet.values, "launch_template_config"):
        return None, True
    entries: list[dict] = list(blocks(fleet.values, "launch_specification"))
    types: list[str] = []
    for cfg in blocks(fleet.values, "launch_template_config"):
        if unknown_block(cfg, label):
            return None, True
        overrides = blocks(cfg, label)
        if not overrides:
            types.append(_lt_type(graph, fleet, "launch_template_config"))
        entries += overrides
    if any(e.get("instance_requirements") for e in entries):
        return None, False
    for e in entries:
        t = e.get("instance_type")
        if t is None:
            types.append(_lt_type(graph, fleet, "launch_template_config"))
        elif is_unresolved(t):
            return None, True
        else:
            types.append(str(t))
    return sorted(set(types)), False


def instance_types(group: Resource, graph: ResourceGraph) -> list[str] | None:
    """Distinct instance types, or None when attribute-based or not knowable."""
    if group.type in (SPOT_FLEET, EC2_FLEET, SPOT_REQUEST):
        return fleet_types(group, graph)[0]
    if group.type == "aws_eks_node_group":
        types = group.values.get("instance_types")
        if types is None:
            return ["t3.medium (the EKS default)"]
        if not isinstance(types, list) or any(is_unresolved(t) for t in types):
            return None
        return sorted(set(types))
    if unknown_block(group.values, "mixed_instances_policy", "launch_template", "override"):
        return None
    mip = block(group.values, "mixed_instances_policy")
    if not mip:
        return ["(launch template type)"]
    lt = block(mip, "launch_template")
    overrides = blocks(lt, "override")
    if not overrides:
        return ["(launch template type)"]
    if any(o.get("instance_requirements") for o in overrides):
        return None
    types = [o.get("instance_type") for o in overrides]
    if any(t is None or is_unresolved(t) for t in types):
        return None
    return sorted(set(types))


def _subnet_zone(owner: Resource, subnet: str, graph: ResourceGraph) -> set[str] | None:
    """The zones of one subnet value: a subnet resource's availability zone, or the id itself (one zone)."""
    if not isinstance(subnet, str) or "*" in subnet or "module." in subnet:
        return None
    targets = [r for r in graph.resources if r.config == owner.config and r.type == "aws_subnet" and r.base in _refs(subnet)]
    if targets:
        return {str(t.values.get("availability_zone") or t.values.get("availability_zone_id") or t.address) for t in targets}
    if is_unresolved(subnet):
        return {subnet}  # one unresolved subnet: one zone, as for groups
    return {s.strip() for s in subnet.split(",") if s.strip()}  # spot fleets take "subnet-a, subnet-b"


def fleet_zone_count(fleet: Resource, graph: ResourceGraph) -> int | None:
    """Availability zones a fleet or spot request can launch in (None when not known before apply).
    An entry without a subnet or zone launches where its launch template says, or in the default
    subnet: one zone."""
    if fleet.type == SPOT_REQUEST:
        return 1
    label = "overrides" if fleet.type == SPOT_FLEET else "override"
    if unknown_block(fleet.values, "launch_specification") or unknown_block(fleet.values, "launch_template_config"):
        return None
    entries: list[dict] = list(blocks(fleet.values, "launch_specification"))
    for cfg in blocks(fleet.values, "launch_template_config"):
        if unknown_block(cfg, label):
            return None
        entries += blocks(cfg, label) or [{}]
    zones: set[str] = set()
    for e in entries or [{}]:
        az, subnet = e.get("availability_zone"), e.get("subnet_id")
        if az is not None:
            if is_unresolved(az):
                return None
            zones.add(str(az))
        elif subnet is not None:
            found = _subnet_zone(fleet, subnet, graph)
            if found is None:
                return None
            zones |= found
        else:
            zones.add("(launch template or default subnet)")
    return len(zones)


def zone_count(group: Resource, graph: ResourceGraph) -> int | None:
    if group.type in (SPOT_FLEET, EC2_FLEET, SPOT_REQUEST):
        return fleet_zone_count(group, graph)
    if group.type == "aws_eks_node_group":
        group = Resource(group.type, group.name, group.address, {"vpc_zone_identifier": group.values.get("subnet_ids")},
                         group.file, group.refs, {"vpc_zone_identifier": group.attr_refs.get("subnet_ids", set())})
    azs = group.values.get("availability_zones")
    if isinstance(azs, list) and azs and not any(is_unresolved(a) for a in azs):
        return len(set(azs))
    subnets = group.values.get("vpc_zone_identifier")
    if isinstance(subnets, list) and subnets:
        zones: set[str] = set()
        for s in subnets:
            if not isinstance(s, str) or "*" in s or "module." in s:
                return None  # a splat or a module output can hold any number of subnets
            targets = [r for r in graph.resources if r.config == group.config and r.type == "aws_subnet" and r.base in _refs(s)]
            if targets:
                zones |= {str(t.values.get("availability_zone") or t.values.get("availability_zone_id") or t.address) for t in targets}
            else:
                zones.add(s)  # a subnet id or one unresolved subnet: counted as its own zone
        return len(zones)
    # plan JSON: subnet ids are computed; count the referenced subnets (each count index is a resource)
    refs = group.attr_refs.get("vpc_zone_identifier", set())
    if refs and all(r.startswith("aws_subnet.") for r in refs):
        subnet_res = [r for r in graph.resources if r.config == group.config and r.base in refs]
        if subnet_res:
            return len({str(s.values.get("availability_zone") or s.values.get("availability_zone_id") or id(s)) for s in subnet_res})
    return None


def _refs(text: str) -> set[str]:
    from toolkit.check.loader import references_in

    return references_in(text)


def _names_match(value, target: Resource) -> bool:
    name = target.values.get("name")
    return isinstance(value, str) and isinstance(name, str) and not is_unresolved(name) and value == name


def hooks_for(group: Resource, graph: ResourceGraph) -> list:
    hooks = [h for h in blocks(group.values, "initial_lifecycle_hook") if h.get("lifecycle_transition") == TERMINATING]
    for h in graph.same_config(group, "aws_autoscaling_lifecycle_hook"):
        if h.values.get("lifecycle_transition") != TERMINATING:
            continue
        if h.refers_to(group, "autoscaling_group_name") or _names_match(h.values.get("autoscaling_group_name"), group):
            hooks.append(h)
    return hooks


def capacity_providers_for(group: Resource, graph: ResourceGraph) -> list[Resource]:
    return [cp for cp in graph.same_config(group, "aws_ecs_capacity_provider")
            if cp.refers_to(group, "auto_scaling_group_arn")]


def draining(cp: Resource) -> str:
    """ECS managed draining is ENABLED by default when a capacity provider is created."""
    value = block(cp.values, "auto_scaling_group_provider").get("managed_draining")
    return "ENABLED" if value is None else str(value)


def target_groups_of(group: Resource, graph: ResourceGraph) -> list[Resource]:
    found = graph.resolve(group, "target_group_arns", *TARGET_GROUPS)
    for att in graph.same_config(group, "aws_autoscaling_attachment"):
        if att.refers_to(group, "autoscaling_group_name") or _names_match(att.values.get("autoscaling_group_name"), group):
            found += graph.resolve(att, "lb_target_group_arn", *TARGET_GROUPS)
    return found


def _provider_is_spot(graph: ResourceGraph, service: Resource, entry: dict) -> tuple[bool | None, bool]:
    """(is spot, has an on-demand base inside the provider's own group) for a strategy entry."""
    name = entry.get("capacity_provider")
    if name == "FARGATE_SPOT":
        return True, False
    if name == "FARGATE":
        return False, False
    providers = [cp for cp in graph.same_config(service, "aws_ecs_capacity_provider")
                 if (isinstance(name, str) and cp.base in _refs(name)) or _names_match(name, cp)]
    if not providers and not isinstance(name, str):
        providers = graph.resolve(service, "capacity_provider", "aws_ecs_capacity_provider")
    for cp in providers:
        groups = graph.resolve(cp, "auto_scaling_group_arn", ASG)
        for g in groups:
            spot = spot_share(g, graph)
            base = _int(block(g.values, "mixed_instances_policy", "instances_distribution").get("on_demand_base_capacity"), 0)
            return spot, bool(base and base > 0)
    return None, False


def service_strategy(service: Resource, graph: ResourceGraph) -> list[dict]:
    entries = blocks(service.values, "capacity_provider_strategy")
    if entries or service.values.get("launch_type"):
        return entries
    # no strategy and no launch type: the cluster's default strategy applies
    clusters = service.attr_refs.get("cluster", set())
    for ccp in graph.same_config(service, "aws_ecs_cluster_capacity_providers"):
        same_ref = bool(clusters & ccp.attr_refs.get("cluster_name", set()))
        cluster, name = service.values.get("cluster"), ccp.values.get("cluster_name")
        same_literal = isinstance(cluster, str) and isinstance(name, str) and not is_unresolved(name) \
            and (cluster == name or cluster.endswith(f":cluster/{name}"))
        if same_ref or same_literal:
            return blocks(ccp.values, "default_capacity_provider_strategy")
    return []


def interruption_rules(graph: ResourceGraph, config: str) -> list[Resource]:
    found = []
    for rule in graph.of_type("aws_cloudwatch_event_rule"):
        if rule.config != config:
            continue
        raw = rule.values.get("event_pattern")
        if not isinstance(raw, str):
            continue
        try:
            pattern = json.loads(raw)
        except json.JSONDecodeError:
            if INTERRUPTION_DETAIL_TYPE in raw:
                found.append(rule)
            continue
        if not isinstance(pattern, dict):
            continue
        sources = as_list(pattern.get("source"))
        detail_types = as_list(pattern.get("detail-type"))
        if "aws.ec2" in sources and (not detail_types or INTERRUPTION_DETAIL_TYPE in detail_types):
            found.append(rule)
    return found


def targets_of(rule: Resource, graph: ResourceGraph) -> list[Resource]:
    return [t for t in graph.same_config(rule, "aws_cloudwatch_event_target")
            if t.refers_to(rule, "rule") or _names_match(t.values.get("rule"), rule)]


def volume_tags(lt: Resource) -> dict:
    tags: dict = {}
    for spec in blocks(lt.values, "tag_specifications"):
        if spec.get("resource_type") == "volume" and isinstance(spec.get("tags"), dict):
            tags.update(spec["tags"])
    return tags


def snapshot_policies_for(lt: Resource, graph: ResourceGraph) -> list[Resource]:
    tags = volume_tags(lt)
    out = []
    for policy in graph.same_config(lt, "aws_dlm_lifecycle_policy"):
        if str(policy.values.get("state", "ENABLED")) == "DISABLED":
            continue
        details = block(policy.values, "policy_details")
        kinds = [str(k) for k in as_list(details.get("resource_types"))] or ["VOLUME"]
        if not ({"VOLUME", "INSTANCE"} & set(kinds)):
            continue
        wanted = details.get("target_tags")
        if isinstance(wanted, dict) and not any(is_unresolved(v) for v in wanted.values()):
            if not all(tags.get(k) == v for k, v in wanted.items()):
                continue
        out.append(policy)
    return out


def data_volumes_deleted(lt: Resource) -> list[str]:
    devices = []
    for mapping in blocks(lt.values, "block_device_mappings"):
        ebs = block(mapping, "ebs")
        device = str(mapping.get("device_name", ""))
        if not ebs or device in ROOT_DEVICES:
            continue
        if _bool(ebs.get("delete_on_termination"), True):  # new EBS volumes are deleted on termination by default
            devices.append(device)
    return devices


def _serving(group: Resource, graph: ResourceGraph) -> bool:
    return bool(target_groups_of(group, graph) or group.values.get("load_balancers") or capacity_providers_for(group, graph))


def _kind(r: Resource) -> str:
    return {"aws_eks_node_group": "node group", SPOT_FLEET: "fleet", EC2_FLEET: "EC2 fleet",
            SPOT_REQUEST: "instance request"}.get(r.type, "group")


def _diverse(graph: ResourceGraph) -> list[Resource]:
    """What the diversity and zone rules (SPOT001-003, SPOT015) judge: spot groups, spot node groups,
    spot fleets, EC2 fleets on spot and spot instance requests."""
    return spot_groups(graph) + spot_node_groups(graph) + spot_fleets(graph)


# --- rules ---------------------------------------------------------------------------------------------

def types_unknown(group: Resource) -> bool:
    """True when the instance types are written but not known before apply (not attribute-based)."""
    if group.type in (SPOT_FLEET, EC2_FLEET, SPOT_REQUEST):
        return fleet_types(group, ResourceGraph())[1]
    if unknown_block(group.values, "mixed_instances_policy", "launch_template", "override"):
        return True
    if group.type == "aws_eks_node_group":
        types = group.values.get("instance_types")
        return is_unresolved(types) or (isinstance(types, list) and any(is_unresolved(t) for t in types))
    overrides = blocks(block(group.values, "mixed_instances_policy", "launch_template"), "override")
    if any(o.get("instance_requirements") for o in overrides):
        return False
    return any(o.get("instance_type") is None or is_unresolved(o.get("instance_type")) for o in overrides)


def _single_type(graph):
    for g in _diverse(graph):
        types = instance_types(g, graph)
        if types is None and types_unknown(g):
            yield Undecided(g, f"the instance types of spot {_kind(g)} {g.address} are not known before apply: could not count them")
        if types is not None and len(types) < 2:
            yield g, f"spot {_kind(g)} {g.address} can launch only one instance type ({', '.join(types)}): when that spot pool is reclaimed, nothing replaces it"


def _two_types(graph):
    for g in _diverse(graph):
        types = instance_types(g, graph)
        if types is not None and len(types) == 2:
            yield g, f"spot {_kind(g)} {g.address} has 2 instance types ({', '.join(types)}); losing one spot pool halves the choice"


def _single_az(graph):
    for g in _diverse(graph):
        n = zone_count(g, graph)
        if n is None:
            yield Undecided(g, f"the subnets of spot {_kind(g)} {g.address} are not known before apply (a module output, splat "
                               "or expression): could not count its availability zones")
        if n is not None and n < 2:
            yield g, f"spot {_kind(g)} {g.address} uses a single availability zone: one zone's spot pools are all it can draw from"


def _rebalance(graph):
    for g in spot_groups(graph):
        raw = g.values.get("capacity_rebalance")
        if is_unresolved(raw):
            yield Undecided(g, f"capacity_rebalance of spot group {g.address} is {raw}, not known before apply")
        elif not _bool(raw, False):
            yield g, f"spot group {g.address} has capacity_rebalance off: it waits for the 2-minute notice instead of replacing at-risk instances early"


def _unknown_hook_transitions(group: Resource, graph: ResourceGraph) -> list[str]:
    """Transitions of the group's lifecycle hooks that are not known before apply."""
    found = [h.get("lifecycle_transition") for h in blocks(group.values, "initial_lifecycle_hook")]
    found += [h.values.get("lifecycle_transition") for h in graph.same_config(group, "aws_autoscaling_lifecycle_hook")
              if h.refers_to(group, "autoscaling_group_name") or _names_match(h.values.get("autoscaling_group_name"), group)]
    return [str(t) for t in found if is_unresolved(t)]


def _no_hook(graph):
    for g in spot_groups(graph):
        if hooks_for(g, graph):
            continue
        if any(draining(cp) == "ENABLED" for cp in capacity_providers_for(g, graph)):
            continue  # ECS managed draining adds its own termination hook
        unknown = [f"ECS managed draining of {cp.address} is {draining(cp)}" for cp in capacity_providers_for(g, graph)
                   if is_unresolved(draining(cp))]
        unknown += [f"a lifecycle hook's lifecycle_transition is {t}" for t in _unknown_hook_transitions(g, graph)]
        if unknown_block(g.values, "initial_lifecycle_hook"):
            unknown.append("its initial_lifecycle_hook blocks come from a dynamic block over a collection")
        if unknown:
            yield Undecided(g, f"spot group {g.address} has no known {TERMINATING} hook, and {'; '.join(unknown)}, "
                               "not known before apply")
            continue
        yield g, f"spot group {g.address} has no {TERMINATING} lifecycle hook: instances are terminated without time to drain or checkpoint"


def _dereg_delay(graph):
    # Target groups in front of spot capacity: a spot group's own, and those of services placed on spot.
    fronts = [(tg, f"spot targets of {g.address}") for g in spot_groups(graph) for tg in target_groups_of(g, graph)]
    for svc in graph.of_type("aws_ecs_service"):
        if any(_provider_is_spot(graph, svc, e)[0] for e in service_strategy(svc, graph)):
            fronts += [(tg, f"spot tasks of {svc.address}")
                       for tg in graph.resolve(svc, "target_group_arn", *TARGET_GROUPS)]
    seen = set()
    for tg, what in fronts:
        if (tg.config, tg.file, tg.address) in seen:
            continue
        seen.add((tg.config, tg.file, tg.address))
        raw = tg.values.get("deregistration_delay")
        if is_unresolved(raw):
            yield Undecided(tg, f"deregistration_delay of target group {tg.address} (in front of {what}) is {raw}, not known before apply")
            continue
        delay = _int(raw, 300 if raw is None else None)
        if delay is not None and delay > SPOT_NOTICE_SECONDS:
            yield tg, (f"target group {tg.address} waits {delay} s to deregister {what}; "
                       f"the spot notice is {SPOT_NOTICE_SECONDS} s, so in-flight requests are cut instead of drained")


def _spot_launch_specs(graph: ResourceGraph) -> set[tuple[str, str]]:
    """(config, address) of launch templates / configurations that spot capacity launches from."""
    out = set()
    for g in spot_groups(graph):
        for lt in launch_templates_of(graph, g) + graph.resolve(g, "launch_configuration", "aws_launch_configuration"):
            out.add((lt.config, lt.address))
    for n in spot_node_groups(graph):
        for lt in graph.resolve(n, "launch_template", *LAUNCH_TEMPLATES):
            out.add((lt.config, lt.address))
    for f in graph.of_type("aws_spot_fleet_request", "aws_ec2_fleet"):
        for lt in graph.resolve(f, "launch_template_config", *LAUNCH_TEMPLATES) + graph.resolve(f, "launch_template_specification", *LAUNCH_TEMPLATES):
            out.add((lt.config, lt.address))
    return out


def _is_spot_market(r: Resource) -> bool:
    return block(r.values, "instance_market_options").get("market_type") == "spot" or r.type == "aws_spot_instance_request" \
        or (r.type == "aws_launch_configuration" and r.values.get("spot_price") not in (None, ""))


def _imdsv1(graph):
    """IMDSv1 is a security finding; it is a spot risk only where spot capacity launches (a spot
    instance's replacement reads the same role credentials), else it is general."""
    spot_specs = _spot_launch_specs(graph)
    for r in graph.of_type("aws_launch_template", "aws_launch_configuration", "aws_instance", "aws_spot_instance_request"):
        meta = block(r.values, "metadata_options")
        if str(meta.get("http_endpoint", "enabled")) == "disabled":
            continue
        tokens = meta.get("http_tokens")
        category = SPOT if ((r.config, r.address) in spot_specs or _is_spot_market(r)) else GENERAL
        if unknown_block(r.values, "metadata_options"):
            if category == SPOT:
                yield Undecided(r, f"metadata_options of {r.address} is a dynamic block over a collection not known before apply")
            continue
        if is_unresolved(tokens):
            if category == SPOT:
                yield Undecided(r, f"metadata_options.http_tokens of {r.address} is {tokens}, not known before apply")
            continue
        if tokens != "required":
            yield r, f"{r.address} allows IMDSv1 (metadata_options.http_tokens is {tokens or 'not set, so optional'}): any SSRF can read the instance role's credentials", category


def _volumes(graph):
    seen = set()
    for g in spot_groups(graph):
        for lt in launch_templates_of(graph, g):
            if (lt.config, lt.file, lt.address) in seen:
                continue
            seen.add((lt.config, lt.file, lt.address))
            if unknown_block(lt.values, "block_device_mappings"):
                yield Undecided(lt, f"the block_device_mappings of {lt.address} come from a dynamic block over a collection "
                                    "not known before apply: could not tell whether data volumes are deleted")
                continue
            devices = data_volumes_deleted(lt)
            if devices and not snapshot_policies_for(lt, graph):
                yield lt, (f"{lt.address} deletes data volume(s) {', '.join(devices)} when a spot instance is terminated, "
                           "and no DLM snapshot policy targets their tags: their data is lost on interruption")


def _ecs_draining(graph):
    for cp in graph.of_type("aws_ecs_capacity_provider"):
        if is_unresolved(draining(cp)):
            if any(spot_share(g, graph) for g in graph.resolve(cp, "auto_scaling_group_arn", ASG)):
                yield Undecided(cp, f"managed_draining of capacity provider {cp.address} over a spot group is {draining(cp)}, "
                                    "not known before apply")
            continue
        if draining(cp) != "DISABLED":
            continue
        for g in graph.resolve(cp, "auto_scaling_group_arn", ASG):
            if spot_share(g, graph):
                yield cp, f"capacity provider {cp.address} over spot group {g.address} has managed_draining DISABLED: tasks are killed, not moved, when an instance is reclaimed"


def _no_on_demand_base(graph):
    for svc in graph.of_type("aws_ecs_service"):
        if unknown_block(svc.values, "capacity_provider_strategy"):
            yield Undecided(svc, f"the capacity_provider_strategy of service {svc.address} is a dynamic block over a collection "
                                 "not known before apply: could not tell whether it runs on spot with an on-demand base")
            continue
        entries = service_strategy(svc, graph)
        kinds = [(e, *_provider_is_spot(graph, svc, e)) for e in entries]
        if not any(spot for _, spot, _ in kinds):
            continue
        floor = any((spot is False and (_int(e.get("base"), 0) or 0) > 0) or inner_base for e, spot, inner_base in kinds)
        if not floor:
            yield svc, f"service {svc.address} runs on spot with no on-demand base: one reclaim can take every task down at once"
    for g in spot_groups(graph):
        if not (target_groups_of(g, graph) or g.values.get("load_balancers")):
            continue
        base = _int(block(g.values, "mixed_instances_policy", "instances_distribution").get("on_demand_base_capacity"), 0)
        if base == 0:
            yield g, f"spot group {g.address} serves a load balancer with on_demand_base_capacity 0: one reclaim can take every instance down at once"


def _spot_capacity(graph: ResourceGraph) -> dict[str, Resource]:
    """The first spot resource of each configuration file."""
    found: dict[str, Resource] = {}
    for r in spot_capacity(graph):
        if r.type == karpenter.NODE_POOL:
            continue  # Karpenter reads its own interruption queue
        found.setdefault(r.config, r)
    return found


def _unrouted(graph):
    for config, first in _spot_capacity(graph).items():
        rules = interruption_rules(graph, config)
        if not rules:
            yield first, ("no EventBridge rule matches '" + INTERRUPTION_DETAIL_TYPE + "' in this configuration: "
                          "nothing outside the instance hears that spot capacity is being reclaimed")
        elif not any(targets_of(r, graph) for r in rules):
            yield rules[0], f"EventBridge rule {rules[0].address} matches spot interruptions but has no target: the events go nowhere"


def _instance_storage_only(graph):
    for g in spot_groups(graph):
        if _serving(g, graph):
            continue  # serving groups keep no checkpoints
        if graph.same_config(g, *DURABLE_STORAGE):
            continue
        lts = launch_templates_of(graph, g)
        if any(_bool(block(m, "ebs").get("delete_on_termination"), True) is False for lt in lts for m in blocks(lt.values, "block_device_mappings")):
            continue
        policies = graph.same_config(g, "aws_iam_role_policy", "aws_iam_policy")
        if any("s3:PutObject" in str(p.values.get("policy", "")) or "s3:*" in str(p.values.get("policy", "")) for p in policies):
            continue
        if any("ec2:AttachVolume" in str(p.values.get("policy", "")) for p in policies):
            continue  # the instances attach a kept EBS volume themselves (spotkit's data volumes claim it at boot)
        if any("AmazonS3FullAccess" in str(a.values.get("policy_arn", "")) for a in graph.same_config(g, "aws_iam_role_policy_attachment")):
            continue
        yield g, (f"spot group {g.address} has no durable place for checkpoints in this configuration (no EFS/FSx, S3 bucket or write "
                  "access, kept EBS volume): checkpoints on instance storage vanish with the instance")


# --- rules from AWS's spot recommendations (SPOT013...) ------------------------------------------------

GPU_FAMILY = re.compile(r"^(g\d|p\d|inf\d|trn\d|dl\d|gr\d|vt\d|f\d)")
_GENERATION = re.compile(r"^([a-z]+\d+)")


def family(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def generation(instance_type: str) -> str:
    """``m5a.large`` -> ``m5``, ``g4dn.xlarge`` -> ``g4``: the family line and its generation."""
    m = _GENERATION.match(family(instance_type))
    return m.group(1) if m else family(instance_type)


def _lowest_price(graph):
    for g in spot_groups(graph):
        mip = block(g.values, "mixed_instances_policy")
        if not mip:
            continue
        if unknown_block(mip, "instances_distribution"):
            yield Undecided(g, f"the instances_distribution of spot group {g.address} is a dynamic block over a collection "
                               "not known before apply")
            continue
        dist = block(mip, "instances_distribution")
        strategy = dist.get("spot_allocation_strategy")
        if is_unresolved(strategy):
            yield Undecided(g, f"spot_allocation_strategy of spot group {g.address} is {strategy}, not known before apply")
            continue
        if strategy in (None, "lowest-price"):
            pools = _int(dist.get("spot_instance_pools"), 2 if dist.get("spot_instance_pools") is None else None)
            how = "lowest-price" if strategy else "not set, so lowest-price (the AWS default)"
            yield g, (f"spot group {g.address} uses spot_allocation_strategy {how}"
                      + (f" over {pools} pool(s)" if pools else "")
                      + ": it fills the cheapest pools, the ones most likely to be reclaimed, and they are reclaimed together")
    for f in graph.of_type("aws_spot_fleet_request"):
        strategy = f.values.get("allocation_strategy")
        if is_unresolved(strategy):
            yield Undecided(f, f"allocation_strategy of {f.address} is {strategy}, not known before apply")
        elif strategy in (None, "lowestPrice"):
            yield f, f"{f.address} uses allocation_strategy {strategy or 'not set, so lowestPrice (the default)'}: it fills the cheapest pools, the ones most likely to be reclaimed"
    for f in graph.of_type("aws_ec2_fleet"):
        target = block(f.values, "target_capacity_specification").get("default_target_capacity_type")
        if target != "spot":
            continue
        strategy = block(f.values, "spot_options").get("allocation_strategy")
        if is_unresolved(strategy):
            yield Undecided(f, f"spot_options.allocation_strategy of {f.address} is {strategy}, not known before apply")
        elif strategy in (None, "lowestPrice", "lowest-price"):
            yield f, f"{f.address} uses spot allocation_strategy {strategy or 'not set, so lowestPrice (the default)'}: it fills the cheapest pools, the ones most likely to be reclaimed"


def _max_price(graph):
    def price_hit(r: Resource, where: str, value):
        if value is None or value == "":
            return None
        if is_unresolved(value):
            return Undecided(r, f"{where} of {r.address} is {value}, not known before apply")
        return (r, f"{r.address} sets {where} = {value}: AWS interrupts the instances whenever the spot price rises above it, "
                   "on top of capacity reclaims")

    hits = []
    for g in spot_groups(graph):
        hits.append(price_hit(g, "mixed_instances_policy.instances_distribution.spot_max_price",
                              block(g.values, "mixed_instances_policy", "instances_distribution").get("spot_max_price")))
    for r in graph.of_type("aws_launch_template", "aws_instance"):
        opts = block(r.values, "instance_market_options")
        if opts.get("market_type") == "spot":
            hits.append(price_hit(r, "instance_market_options.spot_options.max_price", block(opts, "spot_options").get("max_price")))
    for r in graph.of_type("aws_spot_instance_request", "aws_spot_fleet_request", "aws_launch_configuration"):
        hits.append(price_hit(r, "spot_price", r.values.get("spot_price")))
    for r in graph.of_type("aws_ec2_fleet"):
        if block(r.values, "target_capacity_specification").get("default_target_capacity_type") == "spot":
            for cfg in blocks(r.values, "launch_template_config"):
                for o in blocks(cfg, "override"):
                    hits.append(price_hit(r, "launch_template_config.override.max_price", o.get("max_price")))
    yield from (h for h in hits if h is not None)


def _one_family(graph):
    for g in _diverse(graph):
        types = instance_types(g, graph)
        if not types or len(types) < 2 or any(t.startswith("(") for t in types):
            continue  # a single type is SPOT001's
        families = sorted({family(t) for t in types})
        generations = sorted({generation(t) for t in types})
        gpu = " (GPU capacity is scarce: spread it over a second GPU family or generation, e.g. g5 and g6)" \
            if all(GPU_FAMILY.match(t) for t in types) else ""
        if len(families) == 1:
            yield g, (f"spot {_kind(g)} {g.address} uses only sizes of one instance family ({families[0]}: {', '.join(types)}): "
                      f"the sizes of one family share hardware and are reclaimed together{gpu}")
        elif len(generations) == 1:
            yield g, (f"spot {_kind(g)} {g.address} uses one generation of one family line ({', '.join(families)}): "
                      f"they are reclaimed together more often than types from different generations{gpu}")


RULES: tuple[Rule, ...] = (
    Rule("SPOT001", "error", "Spot capacity with a single instance type",
         "list at least 3 instance types of similar size (an ASG's mixed_instances_policy.launch_template.override, a fleet's "
         "launch_template_config overrides) or use instance_requirements; replace a lone spot instance request by an ASG or EC2 fleet",
         _single_type, DOCS["spot_best"],
         description="a spot group, EKS spot node group, spot fleet, EC2 fleet on spot or spot instance request can launch one "
                     "instance type (UNDECIDED when the types are not known before apply)"),
    Rule("SPOT002", "warning", "Spot capacity with fewer than 3 instance types",
         "add a third instance type of similar size, or use attribute-based instance_requirements", _two_types, DOCS["spot_best"],
         description="spot capacity (group, node group, fleet) has 2 instance types"),
    Rule("SPOT003", "error", "Spot capacity in a single availability zone",
         "put subnets of at least 2 availability zones in vpc_zone_identifier (node groups: subnet_ids; fleets: overrides "
         "with subnet_id or availability_zone in 2+ zones)", _single_az, DOCS["spot_best"],
         description="the subnets of a spot group, node group, fleet or spot instance request are in one availability zone "
                     "(two subnets of one zone count as one; a fleet entry without subnet or zone launches in one)"),
    Rule("SPOT004", "warning", "Capacity rebalance off",
         "set capacity_rebalance = true on the group", _rebalance, DOCS["rebalance"],
         description="a spot group has capacity_rebalance off (the AWS default)"),
    Rule("SPOT005", "error", "No termination lifecycle hook",
         f"add a lifecycle hook with lifecycle_transition {TERMINATING} (initial_lifecycle_hook or aws_autoscaling_lifecycle_hook), "
         "heartbeat 60-300 s, or an ECS capacity provider with managed_draining ENABLED", _no_hook, DOCS["hooks"],
         description=f"a spot group has no {TERMINATING} hook (initial hook, aws_autoscaling_lifecycle_hook by reference or "
                     "name) and no ECS capacity provider with managed draining"),
    Rule("SPOT006", "error", "Target group deregistration delay longer than the spot notice",
         f"set deregistration_delay to {SPOT_NOTICE_SECONDS - 30} or less on target groups in front of spot capacity", _dereg_delay,
         DOCS["dereg"],
         description=f"a target group in front of spot (ASG target_group_arns, aws_autoscaling_attachment, ECS service on spot) "
                     f"has deregistration_delay over {SPOT_NOTICE_SECONDS} s (default 300)"),
    Rule("SPOT007", "error", "IMDSv1 allowed",
         'set metadata_options { http_tokens = "required", http_put_response_hop_limit = 2 }', _imdsv1, DOCS["imds"],
         description="a launch template, launch configuration or instance allows IMDSv1 (http_tokens not required); a spot "
                     "risk where spot capacity launches from it, a general finding elsewhere"),
    Rule("SPOT008", "warning", "Data volumes deleted on termination without a snapshot policy",
         "set ebs.delete_on_termination = false on data volumes, or add an aws_dlm_lifecycle_policy whose target_tags match their volume tags",
         _volumes, DOCS["dlm"],
         description="a spot group's launch template deletes a data (non-root) volume on termination and no enabled DLM "
                     "policy targets its volume tags"),
    Rule("SPOT009", "error", "ECS spot capacity provider without managed draining",
         'set auto_scaling_group_provider.managed_draining = "ENABLED" (the default)', _ecs_draining, DOCS["ecs_draining"],
         description='an ECS capacity provider over a spot group has managed_draining = "DISABLED"'),
    Rule("SPOT010", "warning", "Service on spot with no on-demand base",
         "give the service a capacity_provider_strategy entry with base >= 1 on an on-demand provider (or on_demand_base_capacity >= 1 on the group)",
         _no_on_demand_base, DOCS["ecs_providers"],
         description="an ECS service on spot has no on-demand base (own strategy or the cluster default), or a spot group "
                     "behind a load balancer has on_demand_base_capacity = 0"),
    Rule("SPOT011", "warning", "Spot interruption events not routed anywhere",
         f'add an aws_cloudwatch_event_rule with event_pattern {{"source": ["aws.ec2"], "detail-type": ["{INTERRUPTION_DETAIL_TYPE}"]}} '
         "and an aws_cloudwatch_event_target (SQS queue, Lambda, SNS)", _unrouted, DOCS["notices"],
         description=f"a configuration with spot capacity has no EventBridge rule matching '{INTERRUPTION_DETAIL_TYPE}', "
                     "or the rule has no target"),
    Rule("SPOT012", "warning", "Checkpoints on instance storage only",
         "mount EFS/FSx, keep a data EBS volume (delete_on_termination = false), or grant write access to an S3 bucket for checkpoints",
         _instance_storage_only, DOCS["interruptions"],
         description="a spot group that serves nothing (no target group, no ECS provider) has no durable place for "
                     "checkpoints: no EFS/FSx, S3 bucket or s3:PutObject grant, kept EBS volume"),
    Rule("SPOT013", "warning", "Lowest-price spot allocation",
         'set spot_allocation_strategy = "price-capacity-optimized" (allocation_strategy = "priceCapacityOptimized" on fleets) '
         "and drop spot_instance_pools", _lowest_price, DOCS["allocation"],
         description="a spot group's spot_allocation_strategy is lowest-price or unset (the AWS default), or a spot fleet / "
                     "EC2 fleet allocates lowestPrice"),
    Rule("SPOT014", "warning", "Spot max price set",
         "remove spot_max_price / max_price / spot_price: without it you pay the current spot price and are never "
         "interrupted for price (the cap is the on-demand price)", _max_price, DOCS["max_price"],
         description="a spot max price is set: spot_max_price, spot_options.max_price, spot_price on spot requests, fleets "
                     "and launch configurations, an EC2 fleet override's max_price"),
    Rule("SPOT015", "warning", "Spot capacity of one instance family or generation",
         "add instance types from other families and generations of similar size (m6i, m6a, m7i; GPU: g5, g6, g6e)",
         _one_family, DOCS["spot_best"],
         description="the 2+ known instance types of spot capacity (group, node group, fleet) are sizes of one family, or one "
                     "generation of one family line (m5, m5a, m5n); GPU families get a GPU-specific hint"),
    Rule("SPOT016", "warning", "Karpenter spot NodePool without an on-demand fallback",
         'allow both in the NodePool (karpenter.sh/capacity-type In ["spot", "on-demand"]: Karpenter prefers spot and '
         "falls back), or add an on-demand NodePool with a lower weight", karpenter.no_on_demand_fallback, DOCS["karpenter_capacity"],
         description="a Karpenter NodePool launches spot only and no NodePool given allows on-demand"),
    Rule("SPOT017", "warning", "Karpenter consolidation that fights spot interruptions",
         karpenter.CONSOLIDATION_FIX["karpenter.sh/v1"] + "; " + karpenter.CONSOLIDATION_FIX["karpenter.sh/v1beta1"],
         karpenter.consolidation_fights_interruptions, DOCS["karpenter_disruption"],
         description="a NodePool that may launch spot consolidates when underutilized (v1 WhenEmptyOrUnderutilized, the "
                     f"default; v1beta1 WhenUnderutilized) sooner than {karpenter.MIN_CONSOLIDATE_AFTER_SECONDS // 60} min "
                     'after a change, and no nodes: "0" budget stops it'),
)

INVALID_SUPPRESSION = Rule("SPOT000", "error", "Invalid suppression",
                           "write 'RULE_ID: reason' (tag spotkit:skip-check, or check.suppress[].reason in the config)",
                           lambda graph: (), description="a suppression has no reason or names no rule")

RULES_BY_ID = {r.id: r for r in RULES}
_ID = re.compile(r"^(SPOT\d{3}|CKV2?_[A-Z0-9_]+)$")


def is_rule_id(text: str) -> bool:
    return bool(_ID.match(text))
