"""``spotkit check`` on Terraform HCL: every construct the loader evaluates (count, for_each, dynamic
blocks, references across files, locals, variables and tfvars, local and registry modules, mixed
HCL + JSON directories), unknown values reported as undecided, and the mixed-instances fixture.

Each test writes its own small configuration (the HCL fixtures) into a temporary directory; the
mixed-instances fixture (a root over a local module, written here) is tests/fixtures/check/hcl/mixed_instances.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spotkit.check import run_check_on_paths
from spotkit.check.loader import block, blocks, load_graph
from spotkit.errors import ToolkitError

FIXTURES = Path(__file__).parent / "fixtures" / "check"
MIXED = FIXTURES / "hcl" / "mixed_instances"

# A spot group that follows every rule, in HCL: the base each test changes one thing in.
GOOD = """
resource "aws_launch_template" "lt" {
  name_prefix = "t-"
  metadata_options {
    http_tokens = "required"
  }
}

resource "aws_subnet" "a" {
  availability_zone = "eu-west-1a"
}

resource "aws_subnet" "b" {
  availability_zone = "eu-west-1b"
}

resource "aws_autoscaling_group" "g" {
  name                = "g"
  min_size            = 0
  max_size            = 4
  capacity_rebalance  = CAPACITY_REBALANCE
  vpc_zone_identifier = [aws_subnet.a.id, aws_subnet.b.id]

  mixed_instances_policy {
    instances_distribution {
      on_demand_percentage_above_base_capacity = 0
      spot_allocation_strategy                 = STRATEGY
    }
    launch_template {
      launch_template_specification {
        launch_template_id = aws_launch_template.lt.id
      }
      OVERRIDES
    }
  }
  HOOK
}

resource "aws_cloudwatch_event_rule" "spot" {
  event_pattern = jsonencode({ source = ["aws.ec2"], "detail-type" = ["EC2 Spot Instance Interruption Warning"] })
}

resource "aws_cloudwatch_event_target" "spot" {
  rule = aws_cloudwatch_event_rule.spot.name
  arn  = "arn:aws:sqs:eu-west-1:123456789012:spot-events"
}

resource "aws_efs_file_system" "checkpoints" {}
"""
THREE_TYPES = '\n'.join(f'      override {{\n        instance_type = "{t}"\n      }}' for t in ("g5.xlarge", "g6.xlarge", "g5.2xlarge"))
HOOK = """initial_lifecycle_hook {
    name                 = "drain"
    lifecycle_transition = "autoscaling:EC2_INSTANCE_TERMINATING"
    heartbeat_timeout    = 300
  }"""


def good(**changes: str) -> str:
    values = {"CAPACITY_REBALANCE": "true", "STRATEGY": '"price-capacity-optimized"', "OVERRIDES": THREE_TYPES, "HOOK": HOOK}
    values.update(changes)
    text = GOOD
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def findings(root: Path) -> list:
    return run_check_on_paths([str(root)], checkov="off").findings


def fired(found, rule_id=None) -> list[tuple[str, str]]:
    return sorted((f.rule_id, f.resource) for f in found if f.decided and not f.suppressed and (rule_id is None or f.rule_id == rule_id))


def undecided(found) -> list[tuple[str, str]]:
    return sorted((f.rule_id, f.resource) for f in found if not f.decided)


def resources(root: Path) -> dict:
    out: dict = {}
    for r in load_graph([str(root)]).resources:
        out.setdefault(r.base, []).append(r)  # by configuration address: every instance of a count / for_each
    return out


def test_good_hcl_configuration_passes_every_rule(tmp_path):
    # GIVEN the HCL spot group that follows every rule / WHEN checked / THEN nothing fires, nothing is undecided
    found = findings(write(tmp_path, {"main.tf": good()}))
    assert fired(found) == [] and undecided(found) == []


def test_references_across_files_are_followed(tmp_path):
    # GIVEN the termination hook in another file of the same directory, referring to the group
    hook = 'resource "aws_autoscaling_lifecycle_hook" "drain" {\n  name = "drain"\n  autoscaling_group_name = aws_autoscaling_group.g.name\n' \
           '  lifecycle_transition = "autoscaling:EC2_INSTANCE_TERMINATING"\n}\n'
    write(tmp_path, {"main.tf": good(HOOK=""), "hooks.tf": hook})
    # THEN the group has its hook (SPOT005 silent); without that file it fires
    assert fired(findings(tmp_path), "SPOT005") == []
    (tmp_path / "hooks.tf").unlink()
    assert fired(findings(tmp_path), "SPOT005") == [("SPOT005", "aws_autoscaling_group.g")]


def test_count_instances_and_count_zero(tmp_path):
    # GIVEN a group with count = 2 naming itself after count.index, and a subnet with count = 0
    text = good().replace('name                = "g"', 'count = 2\n  name = "g-${count.index}"') + \
        'resource "aws_subnet" "never" {\n  count = 0\n  availability_zone = "eu-west-1c"\n}\n'
    got = resources(write(tmp_path, {"main.tf": text}))
    # THEN two instances of one configuration address, each with its own name and instance key; count = 0 creates none
    assert [r.values["name"] for r in got["aws_autoscaling_group.g"]] == ["g-0", "g-1"]
    assert [r.address for r in got["aws_autoscaling_group.g"]] == ["aws_autoscaling_group.g[0]", "aws_autoscaling_group.g[1]"]
    assert "aws_subnet.never" not in got


def test_for_each_over_a_local_map(tmp_path):
    # GIVEN subnets made with for_each over a local map of zones
    text = good().replace('vpc_zone_identifier = [aws_subnet.a.id, aws_subnet.b.id]', 'vpc_zone_identifier = [aws_subnet.z["a"].id, aws_subnet.z["b"].id]')
    text += 'locals {\n  zones = { a = "eu-west-1a", b = "eu-west-1b" }\n}\nresource "aws_subnet" "z" {\n  for_each = local.zones\n  availability_zone = each.value\n  tags = { Name = "sub-${each.key}" }\n}\n'
    got = resources(write(tmp_path, {"main.tf": text}))
    # THEN each instance has its key and value, and the group's two zones are counted (no SPOT003)
    assert sorted((r.values["availability_zone"], r.values["tags"]["Name"]) for r in got["aws_subnet.z"]) == [
        ("eu-west-1a", "sub-a"), ("eu-west-1b", "sub-b")]
    assert fired(findings(tmp_path), "SPOT003") == []


def test_dynamic_blocks_from_a_local_list(tmp_path):
    # GIVEN overrides written as a dynamic block over a local list of one type, then of three
    dynamic = 'dynamic "override" {\n        for_each = local.types\n        content {\n          instance_type = override.value\n        }\n      }'
    one = good(OVERRIDES=dynamic) + 'locals {\n  types = ["g5.xlarge"]\n}\n'
    write(tmp_path, {"main.tf": one})
    graph = resources(tmp_path)
    lt = block(graph["aws_autoscaling_group.g"][0].values, "mixed_instances_policy", "launch_template")
    assert [o["instance_type"] for o in blocks(lt, "override")] == ["g5.xlarge"]
    # THEN one type fires SPOT001; three types of two families pass
    assert fired(findings(tmp_path), "SPOT001") == [("SPOT001", "aws_autoscaling_group.g")]
    write(tmp_path, {"main.tf": one.replace('["g5.xlarge"]', '["g5.xlarge", "g6.xlarge", "g5.2xlarge"]')})
    assert fired(findings(tmp_path)) == []


def test_variable_default_and_tfvars(tmp_path):
    # GIVEN the allocation strategy from a variable whose default is lowest-price
    text = good(STRATEGY="var.strategy") + 'variable "strategy" {\n  type = string\n  default = "lowest-price"\n}\n'
    write(tmp_path, {"main.tf": text})
    # THEN the default is used (SPOT013 fires) ...
    assert fired(findings(tmp_path), "SPOT013") == [("SPOT013", "aws_autoscaling_group.g")]
    # ... and terraform.tfvars overrides it, as terraform would
    write(tmp_path, {"terraform.tfvars": 'strategy = "price-capacity-optimized"\n'})
    assert fired(findings(tmp_path), "SPOT013") == []


def test_local_from_another_file_and_a_conditional(tmp_path):
    # GIVEN a local in locals.tf, chosen by a conditional on a variable default
    write(tmp_path, {"main.tf": good(CAPACITY_REBALANCE="local.rebalance"),
                     "locals.tf": 'variable "env" {\n  default = "prod"\n}\nlocals {\n  rebalance = var.env == "prod" ? false : true\n}\n'})
    # THEN the local resolves (false) and SPOT004 fires
    assert fired(findings(tmp_path), "SPOT004") == [("SPOT004", "aws_autoscaling_group.g")]


def test_unresolved_reference_is_undecided_never_guessed(tmp_path):
    # GIVEN capacity_rebalance and the on-demand share from variables without defaults
    text = good(CAPACITY_REBALANCE="var.rebalance").replace(
        "on_demand_percentage_above_base_capacity = 0", "on_demand_percentage_above_base_capacity = var.on_demand_pct")
    text += 'variable "rebalance" {\n  type = bool\n}\nvariable "on_demand_pct" {\n  type = number\n}\n'
    found = findings(write(tmp_path, {"main.tf": text}))
    # THEN no rule fires on them, and the check says which rules could not decide
    assert fired(found) == []
    assert ("SPOT004", "aws_autoscaling_group.g") in undecided(found)
    spot4 = [f for f in found if f.rule_id == "SPOT004"][0]
    assert "${var.rebalance}" in spot4.message and "not known before apply" in spot4.message
    # AND undecided findings never fail the run
    report = run_check_on_paths([str(tmp_path)], checkov="off")
    assert report.failing("info") == [] and len(report.undecided) == len(undecided(found))


def test_local_module_is_followed_with_module_addresses(tmp_path):
    # GIVEN the group in a local module called with inputs, and the hook in the root on its output
    module = good(HOOK="", OVERRIDES="OVR").replace("OVR", 'dynamic "override" {\n        for_each = var.types\n        content {\n          instance_type = override.value\n        }\n      }')
    module += 'variable "types" {\n  type = list(string)\n}\noutput "group_name" {\n  value = aws_autoscaling_group.g.name\n}\n'
    root = ('module "workers" {\n  source = "./modules/workers"\n  types = ["m6i.large", "m6a.large", "m7i.large"]\n}\n'
            'resource "aws_autoscaling_lifecycle_hook" "drain" {\n  name = "drain"\n  autoscaling_group_name = module.workers.group_name\n'
            '  lifecycle_transition = "autoscaling:EC2_INSTANCE_TERMINATING"\n}\n')
    write(tmp_path, {"main.tf": root, "modules/workers/main.tf": module})
    got = resources(tmp_path)
    # THEN resources have module addresses, inputs reach the module, and the root hook counts for the group
    assert "module.workers.aws_autoscaling_group.g" in got
    lt = block(got["module.workers.aws_autoscaling_group.g"][0].values, "mixed_instances_policy", "launch_template")
    assert [o["instance_type"] for o in blocks(lt, "override")] == ["m6i.large", "m6a.large", "m7i.large"]
    report = run_check_on_paths([str(tmp_path)], checkov="off")
    assert fired(report.findings) == []
    # the module directory is read as part of the root, not as a root of its own
    assert sorted(Path(f).name for f in report.files) == ["main.tf", "main.tf"]


def test_registry_module_is_reported_not_inspected_unless_a_plan_is_given(tmp_path):
    # GIVEN a root calling a registry module
    write(tmp_path, {"main.tf": 'module "asg" {\n  source  = "terraform-aws-modules/autoscaling/aws"\n  version = "~> 7.0"\n  name = "x"\n}\n'})
    report = run_check_on_paths([str(tmp_path)], checkov="off")
    # THEN it is listed with its source and version, not guessed at
    assert [m.to_dict() for m in report.not_inspected] == [{"module": "module.asg", "source": "terraform-aws-modules/autoscaling/aws",
                                                           "version": "~> 7.0", "file": str(tmp_path / "main.tf")}]
    # WHEN the plan of that configuration is given too
    plan = {"format_version": "1.2", "planned_values": {"root_module": {"child_modules": [{"address": "module.asg", "resources": [{
        "address": "module.asg.aws_autoscaling_group.this[0]", "mode": "managed", "type": "aws_autoscaling_group", "name": "this",
        "values": {"name": "x", "capacity_rebalance": False, "availability_zones": ["eu-west-1a", "eu-west-1b"],
                   "mixed_instances_policy": [{"instances_distribution": [{"on_demand_percentage_above_base_capacity": 0,
                                                                           "spot_allocation_strategy": "price-capacity-optimized"}],
                                               "launch_template": [{"override": [{"instance_type": t} for t in ("m6i.large", "m6a.large", "m7i.large")]}]}]}}]}]}}}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    report = run_check_on_paths([str(tmp_path), str(tmp_path / "plan.json")], checkov="off")
    # THEN the module's resources are checked from the plan and it is no longer "not inspected"
    assert report.not_inspected == []
    assert ("SPOT004", "module.asg.aws_autoscaling_group.this[0]") in fired(report.findings)  # the plan's own address


def test_mixed_hcl_and_json_directory(tmp_path):
    # GIVEN the group in main.tf and its termination hook in hooks.tf.json (one module, as in terraform)
    hook = {"resource": {"aws_autoscaling_lifecycle_hook": {"drain": {
        "name": "drain", "autoscaling_group_name": "${aws_autoscaling_group.g.name}",
        "lifecycle_transition": "autoscaling:EC2_INSTANCE_TERMINATING"}}}}
    write(tmp_path, {"main.tf": good(HOOK=""), "hooks.tf.json": json.dumps(hook)})
    report = run_check_on_paths([str(tmp_path)], checkov="off")
    # THEN both files are read as one configuration: the hook counts for the group
    assert sorted(Path(f).name for f in report.files) == ["hooks.tf.json", "main.tf"]
    assert fired(report.findings) == []


def test_mixed_instances_example():
    # GIVEN a root calling a local Auto Scaling module with two sizes of one family, hooks, rebalance
    #   on, subnets from the registry VPC module and an interruption rule without a target
    report = run_check_on_paths([str(MIXED)], checkov="off")
    # THEN: m6i.large + m6i.xlarge is two types of one family; the interruption rule has no target;
    # no checkpoint storage; the VPC registry module is not inspected, so the zones are undecided
    assert fired(report.findings) == [
        ("SPOT002", "module.web.aws_autoscaling_group.this"),
        ("SPOT011", "aws_cloudwatch_event_rule.spot_warning"),
        ("SPOT012", "module.web.aws_autoscaling_group.this"),
        ("SPOT015", "module.web.aws_autoscaling_group.this")]
    assert undecided(report.findings) == [("SPOT003", "module.web.aws_autoscaling_group.this")]
    assert [(m.module, m.source, m.version) for m in report.not_inspected] == [("module.network", "terraform-aws-modules/vpc/aws", "~> 5.0")]
    spot15 = [f for f in report.findings if f.rule_id == "SPOT015"][0]
    assert spot15.file.endswith("modules/asg/main.tf") and spot15.line == 12


def test_a_tf_file_stands_for_its_directory(tmp_path):
    write(tmp_path, {"main.tf": good(HOOK=""), "other.tf": "# nothing\n"})
    assert fired(run_check_on_paths([str(tmp_path / "other.tf")], checkov="off").findings, "SPOT005") == [
        ("SPOT005", "aws_autoscaling_group.g")]


def test_invalid_hcl_is_a_clear_error(tmp_path):
    write(tmp_path, {"main.tf": 'resource "aws_autoscaling_group" "g" {\n  name = \n'})
    with pytest.raises(ToolkitError) as err:
        run_check_on_paths([str(tmp_path)], checkov="off")
    assert err.value.message.startswith(f"{tmp_path / 'main.tf'} is not valid HCL")
    assert err.value.hint == f"terraform -chdir={tmp_path} validate"


def test_missing_local_module_directory_is_a_clear_error(tmp_path):
    write(tmp_path, {"main.tf": 'module "m" {\n  source = "./nowhere"\n}\n'})
    with pytest.raises(ToolkitError) as err:
        run_check_on_paths([str(tmp_path)], checkov="off")
    assert "source './nowhere' is not a directory" in err.value.message


def test_suppression_tag_in_hcl(tmp_path):
    # GIVEN the hook missing, suppressed with a reason in the group's tag block (the ASG form of tags)
    tag = 'tag {\n    key = "spotkit:skip-check"\n    value = "SPOT005: the workload keeps no state"\n    propagate_at_launch = false\n  }'
    report = run_check_on_paths([str(write(tmp_path, {"main.tf": good(HOOK=tag)}))], checkov="off")
    # THEN the finding is kept as suppressed, with its reason
    [spot5] = [f for f in report.findings if f.rule_id == "SPOT005"]
    assert (spot5.suppressed, spot5.suppression_reason, spot5.suppression_kind) == (True, "the workload keeps no state", "inSource")


def test_cli_exit_codes_on_an_hcl_directory(tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}

    def spotkit(*args):
        return subprocess.run([sys.executable, "-m", "spotkit.cli.main", "check", *args], cwd=root, env=env,
                              capture_output=True, text=True, timeout=120)

    # GIVEN a directory with an error (no termination hook) / THEN exit 1 naming the rule
    bad = spotkit(str(write(tmp_path / "bad", {"main.tf": good(HOOK="")})), "--no-checkov")
    assert bad.returncode == 1
    assert bad.stderr.splitlines()[0] == "Error: check found 1 finding(s) at or above error: SPOT005"
    # a clean one exits 0; an undecided value does not fail it
    clean = spotkit(str(write(tmp_path / "ok", {"main.tf": good(CAPACITY_REBALANCE="var.r") + 'variable "r" {}\n'})), "--no-checkov", "--fail-on", "info")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "UNDECIDED SPOT004" in clean.stdout and clean.stdout.rstrip().splitlines()[-2].endswith("1 undecided")


def test_suppression_comment_in_hcl(tmp_path):
    # GIVEN a skip comment inside one resource block and another on the line above a second one
    text = good(HOOK="# spotkit:skip-check SPOT005: the workload keeps no state") + \
        '# spotkit:skip-check SPOT007: vendor AMI reads IMDSv1\nresource "aws_instance" "vendor" {\n  ami = "ami-1"\n}\n' + \
        '# spotkit:skip-check SPOT007: this comment is two lines above\n\nresource "aws_instance" "other" {\n  ami = "ami-1"\n}\n'
    report = run_check_on_paths([str(write(tmp_path, {"main.tf": text}))], checkov="off")
    got = {(f.rule_id, f.resource): (f.suppressed, f.suppression_reason) for f in report.findings}
    # THEN each suppresses only its own resource's finding, with its reason
    assert got[("SPOT005", "aws_autoscaling_group.g")] == (True, "the workload keeps no state")
    assert got[("SPOT007", "aws_instance.vendor")] == (True, "vendor AMI reads IMDSv1")
    assert got[("SPOT007", "aws_instance.other")] == (False, None)


def test_missing_object_attributes_are_null_and_try_falls_back(tmp_path):
    # GIVEN a module reading attributes its (optional-typed) object input may leave out, the way
    # terraform-aws-modules/autoscaling does: `x.spot_options != null ? [...] : []`, try(), can()
    module = '''
variable "market" {
  type = object({ market_type = string, spot_options = optional(object({ max_price = optional(string) })) })
}
resource "aws_launch_template" "lt" {
  dynamic "instance_market_options" {
    for_each = [var.market]
    content {
      market_type = instance_market_options.value.market_type
      dynamic "spot_options" {
        for_each = instance_market_options.value.spot_options != null ? [instance_market_options.value.spot_options] : []
        content {
          max_price = spot_options.value.max_price
        }
      }
    }
  }
  description = try(var.market.description, "fallback")
  ebs_optimized = can(var.market.description)
  metadata_options {
    http_tokens = "required"
  }
}
'''
    write(tmp_path, {"main.tf": 'module "m" {\n  source = "./m"\n  market = { market_type = "spot" }\n}\n', "m/main.tf": module})
    [lt] = resources(tmp_path)["module.m.aws_launch_template.lt"]
    # THEN the missing spot_options is null (no spot_options block), try() falls back, can() is false
    assert lt.values["instance_market_options"] == [{"market_type": "spot"}]
    assert (lt.values["description"], lt.values["ebs_optimized"]) == ("fallback", False)
    # AND with a max price given, SPOT014 fires through the two dynamic blocks
    write(tmp_path, {"main.tf": 'module "m" {\n  source = "./m"\n  market = { market_type = "spot", spot_options = { max_price = "0.2" } }\n}\n'})
    assert fired(findings(tmp_path), "SPOT014") == [("SPOT014", "module.m.aws_launch_template.lt")]


def test_for_expressions_and_module_for_each(tmp_path):
    # GIVEN node groups as a map, filtered with a for expression into a module called with for_each
    # (the terraform-aws-eks pattern), one of them on spot with a single instance type
    module = good(HOOK="", OVERRIDES="OVR").replace("OVR", 'dynamic "override" {\n        for_each = var.types\n        content {\n          instance_type = override.value\n        }\n      }')
    module = module.replace('name                = "g"', 'name = var.name').replace("on_demand_percentage_above_base_capacity = 0", "on_demand_percentage_above_base_capacity = var.on_demand_pct")
    module += 'variable "name" {}\nvariable "types" {}\nvariable "on_demand_pct" {}\n'
    root = '''
variable "create" {
  default = true
}
locals {
  groups = {
    web   = { types = ["m6i.large"], on_demand_pct = 100 }
    batch = { types = ["m6i.large"], on_demand_pct = 0 }
    off   = { types = ["m6i.large"], on_demand_pct = 0, skip = true }
  }
}
module "groups" {
  source   = "./modules/group"
  for_each = { for k, v in local.groups : k => v if var.create && !try(v.skip, false) }
  name          = each.key
  types         = [for t in each.value.types : t]
  on_demand_pct = each.value.on_demand_pct
}
'''
    write(tmp_path, {"main.tf": root, "modules/group/main.tf": module})
    got = resources(tmp_path)
    # THEN one instance per kept key, addressed as terraform does, with its own inputs
    groups = sorted(a for a in got if a.endswith("aws_autoscaling_group.g"))
    assert groups == ['module.groups["batch"].aws_autoscaling_group.g', 'module.groups["web"].aws_autoscaling_group.g']
    assert got['module.groups["web"].aws_autoscaling_group.g'][0].values["name"] == "web"
    from spotkit.check.rules import launch_templates_of

    graph = load_graph([str(tmp_path)])
    batch = graph.by_address('module.groups["batch"].aws_autoscaling_group.g')
    assert [lt.address for lt in launch_templates_of(graph, batch)] == ['module.groups["batch"].aws_launch_template.lt']
    # AND only the spot instance (batch) fires the single-type rule; references stay inside each instance
    assert fired(findings(tmp_path), "SPOT001") == [("SPOT001", 'module.groups["batch"].aws_autoscaling_group.g')]


def test_null_input_to_a_non_nullable_variable_takes_its_default_and_maps_compare_with_null(tmp_path):
    # GIVEN (the terraform-aws-eks pattern) a module whose `create` is nullable = false and gets null,
    # and a for_each over a map that holds an unknown value, guarded by `!= null`
    module = ('variable "create" {\n  type = bool\n  default = true\n  nullable = false\n}\n'
              'variable "settings" {}\n'
              'resource "aws_launch_template" "lt" {\n  count = var.create && var.settings != null ? 1 : 0\n'
              '  image_id = var.settings.ami\n  metadata_options {\n    http_tokens = "required"\n  }\n}\n')
    root = ('variable "ami" {}\nmodule "m" {\n  source = "./m"\n  create = null\n'
            '  settings = { ami = var.ami, name = "x" }\n}\n')
    write(tmp_path, {"main.tf": root, "m/main.tf": module})
    # THEN the default (true) applies, the map is known to be non-null, and the unknown value stays unknown
    [lt] = resources(tmp_path)["module.m.aws_launch_template.lt"]
    assert lt.values["image_id"] == "${var.ami}"
