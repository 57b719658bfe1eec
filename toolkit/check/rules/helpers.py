"""What several spot rules share: what launches spot (groups, node groups, fleets, services, NodePools),
its instance types, and the resources around it (launch templates, hooks' groups, capacity providers,
target groups, service strategies), read from the Terraform AWS provider schema (hashicorp/aws 5.x).
A helper returns None where a value is not known before apply: the rules then say UNDECIDED, never guess."""

from __future__ import annotations

from spotkit.check.graph import NODE_POOL, Resource, ResourceGraph, block, blocks, is_unresolved, references_in, unknown_block
from spotkit.k8s.karpenter import capacity_types

ASG = "aws_autoscaling_group"


SPOT_FLEET, EC2_FLEET, SPOT_REQUEST = "aws_spot_fleet_request", "aws_ec2_fleet", "aws_spot_instance_request"


TARGET_GROUPS = ("aws_lb_target_group", "aws_alb_target_group")


LAUNCH_TEMPLATES = ("aws_launch_template",)


def as_int(value, default=None):
    if value is None or is_unresolved(value):
        return default
    try:
        return int(str(value).strip())
    except ValueError:
        return default


def as_bool(value, default=None):
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
        value = as_int(pct)
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
        if as_int(total) is None or as_int(on_demand) is None:
            return None
        return as_int(on_demand) < as_int(total)
    spec = block(fleet.values, "target_capacity_specification")
    default, spot_target = spec.get("default_target_capacity_type"), spec.get("spot_target_capacity")
    if default == "spot" or (as_int(spot_target) or 0) > 0:
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
    found += [p for p in graph.of_type(NODE_POOL) if "spot" in capacity_types(p.values)]
    return found


def maybe_spot_capacity(graph: ResourceGraph) -> list[Resource]:
    """What may launch spot, when a value that decides it is not known before apply (a group's spot
    share, a node group's capacity_type, a fleet's target capacity type): the engine checks these as
    if they were spot, and reports what fires only then as undecided."""
    found = [g for g in graph.of_type(ASG) if spot_share(g, graph) is None]
    found += [n for n in graph.of_type("aws_eks_node_group") if is_unresolved(n.values.get("capacity_type"))]
    found += [f for f in graph.of_type(SPOT_FLEET, EC2_FLEET) if fleet_is_spot(f, graph) is None]
    return found


def lt_type(graph: ResourceGraph, source: Resource, attr: str) -> str:
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
            return [lt_type(graph, fleet, "launch_template")], False
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
            types.append(lt_type(graph, fleet, "launch_template_config"))
        entries += overrides
    if any(e.get("instance_requirements") for e in entries):
        return None, False
    for e in entries:
        t = e.get("instance_type")
        if t is None:
            types.append(lt_type(graph, fleet, "launch_template_config"))
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


def names_match(value, target: Resource) -> bool:
    name = target.values.get("name")
    return isinstance(value, str) and isinstance(name, str) and not is_unresolved(name) and value == name


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
        if att.refers_to(group, "autoscaling_group_name") or names_match(att.values.get("autoscaling_group_name"), group):
            found += graph.resolve(att, "lb_target_group_arn", *TARGET_GROUPS)
    return found


def provider_is_spot(graph: ResourceGraph, service: Resource, entry: dict) -> tuple[bool | None, bool]:
    """(is spot, has an on-demand base inside the provider's own group) for a strategy entry."""
    name = entry.get("capacity_provider")
    if name == "FARGATE_SPOT":
        return True, False
    if name == "FARGATE":
        return False, False
    providers = [cp for cp in graph.same_config(service, "aws_ecs_capacity_provider")
                 if (isinstance(name, str) and cp.base in references_in(name)) or names_match(name, cp)]
    if not providers and not isinstance(name, str):
        providers = graph.resolve(service, "capacity_provider", "aws_ecs_capacity_provider")
    for cp in providers:
        groups = graph.resolve(cp, "auto_scaling_group_arn", ASG)
        for g in groups:
            spot = spot_share(g, graph)
            base = as_int(block(g.values, "mixed_instances_policy", "instances_distribution").get("on_demand_base_capacity"), 0)
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


def kind_of(r: Resource) -> str:
    return {"aws_eks_node_group": "node group", SPOT_FLEET: "fleet", EC2_FLEET: "EC2 fleet",
            SPOT_REQUEST: "instance request"}.get(r.type, "group")


def diverse(graph: ResourceGraph) -> list[Resource]:
    """What the diversity and zone rules (SPOT001-003, SPOT015) judge: spot groups, spot node groups,
    spot fleets, EC2 fleets on spot and spot instance requests."""
    return spot_groups(graph) + spot_node_groups(graph) + spot_fleets(graph)
