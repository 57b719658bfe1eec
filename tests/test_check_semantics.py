"""``spotkit check`` with Terraform's own semantics, on minimal reproductions of issue 26 and 25:
``optional()`` defaults, ``dynamic`` over null / unknown collections, instance keys, several roots,
fleets and node groups that may be spot, a run with no spot capacity, SPOT017 on v1beta1, and
inputs that are too large, binary or not UTF-8 (user errors, never a traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spotkit.check import run_check_on_paths
from spotkit.check.loader import load_graph
from spotkit.check.report import render_text
from spotkit.cli.main import main

SPOT_GROUP = """
resource "aws_subnet" "a" {
  availability_zone = "eu-west-1a"
}

resource "aws_subnet" "b" {
  availability_zone = "eu-west-1b"
}

resource "aws_autoscaling_group" "g" {
  min_size            = 0
  max_size            = 4
  capacity_rebalance  = true
  vpc_zone_identifier = [aws_subnet.a.id, aws_subnet.b.id]
  mixed_instances_policy {
    instances_distribution {
      on_demand_percentage_above_base_capacity = 0
      spot_allocation_strategy                 = "price-capacity-optimized"
    }
    launch_template {
      launch_template_specification {
        launch_template_id = "lt-0123456789abcdef0"
      }
      dynamic "override" {
        for_each = var.types
        content {
          instance_type = override.value
        }
      }
      dynamic "override" {
        for_each = REQUIREMENTS
        content {
          instance_requirements {
            vcpu_count {
              min = override.value.vcpus
            }
          }
        }
      }
    }
  }
}
"""


MAX_HCL_MB = 2  # the documented default cap on one .tf / .tfvars file (docs/check.md)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def group(types: list[str], requirements: str, extra: str = "") -> str:
    return SPOT_GROUP.replace("REQUIREMENTS", requirements) + \
        f'variable "types" {{\n  default = {json.dumps(types)}\n}}\n' + extra


def fired(report, *rule_ids):
    return sorted((f.rule_id, f.resource, f.decided) for f in report.findings if f.rule_id in rule_ids)


def cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(args)
    out = capsys.readouterr()
    return done.value.code, out.out, out.err


# --- optional() defaults ----------------------------------------------------------------------------------

def test_optional_defaults_apply_at_every_depth(tmp_path):
    # GIVEN an object variable whose type has optional() defaults, nested in a list and in an object,
    #   given by a module call that sets none of them, and a launch template reading them
    module = '''
variable "cfg" {
  type = object({
    http_tokens = optional(string, "required") # IMDSv2 unless asked otherwise
    volumes = optional(list(object({
      device      = optional(string, "/dev/sdf")
      keep        = optional(bool, false)
    })), [])
    meta = optional(object({ hops = optional(number, 1) }), {})
  })
}
resource "aws_launch_template" "lt" {
  metadata_options {
    http_tokens                 = var.cfg.http_tokens
    http_put_response_hop_limit = var.cfg.meta.hops
  }
  dynamic "block_device_mappings" {
    for_each = var.cfg.volumes
    content {
      device_name = block_device_mappings.value.device
      ebs {
        delete_on_termination = !block_device_mappings.value.keep
      }
    }
  }
}
'''
    root = 'module "m" {\n  source = "./m"\n  cfg = { volumes = [{}] }\n}\n'
    graph = load_graph([str(write(tmp_path, {"main.tf": root, "m/main.tf": module}))])
    [lt] = graph.of_type("aws_launch_template")
    # THEN each absent attribute takes its default, inside the list element and the nested object too
    assert lt.values["metadata_options"] == [{"http_tokens": "required", "http_put_response_hop_limit": 1}]
    assert [m["device_name"] for m in lt.values["block_device_mappings"]] == ["/dev/sdf"]


def test_optional_default_applies_to_a_null_attribute_and_to_the_variable_default(tmp_path):
    # GIVEN a variable default {} and a null attribute in a tfvars-free root
    text = 'variable "v" {\n  type = object({ a = optional(string, "x"), b = optional(string) })\n  default = { b = null }\n}\n' \
           'resource "aws_instance" "i" {\n  metadata_options {\n    http_tokens = var.v.a\n  }\n  tags = { b = var.v.b }\n}\n'
    [res] = load_graph([str(write(tmp_path, {"main.tf": text}))]).of_type("aws_instance")
    # THEN the default's missing attribute takes its optional() default, and an optional() without default is null
    assert res.values["metadata_options"] == [{"http_tokens": "x"}]
    assert res.values["tags"] == {"b": None}


# --- dynamic blocks over null or unknown collections --------------------------------------------------------

def test_dynamic_over_null_makes_no_phantom_override(tmp_path):
    # GIVEN t3.large + t3a.large through one dynamic override, and a dynamic instance_requirements override
    #   over a variable whose default is null
    extra = 'variable "reqs" {\n  default = null\n}\n'
    report = run_check_on_paths([str(write(tmp_path, {"main.tf": group(["t3.large", "t3a.large"], "var.reqs", extra)}))], checkov="off")
    # THEN the null collection makes no block: the types are known and SPOT002 and SPOT015 fire (decided)
    assert fired(report, "SPOT001", "SPOT002", "SPOT015") == [("SPOT002", "aws_autoscaling_group.g", True),
                                                             ("SPOT015", "aws_autoscaling_group.g", True)]


@pytest.mark.parametrize("order", ["dynamic first", "static first"])
def test_a_dynamic_block_and_a_static_block_of_one_type_both_count(tmp_path, order):
    # GIVEN a spot launch template with a data volume from a dynamic block_device_mappings and the root
    #   volume as a static block of the same type, in either order
    dynamic = """
  dynamic "block_device_mappings" {
    for_each = ["/dev/sdf"]
    content {
      device_name = block_device_mappings.value
      ebs {
        volume_size = 200
      }
    }
  }
"""
    static = """
  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size = 40
    }
  }
"""
    volumes = dynamic + static if order == "dynamic first" else static + dynamic
    main = f"""
resource "aws_launch_template" "lt" {{
  instance_type = "m6i.large"
  instance_market_options {{
    market_type = "spot"
  }}
{volumes}
}}

resource "aws_autoscaling_group" "g" {{
  min_size           = 0
  max_size           = 2
  availability_zones = ["eu-west-1a", "eu-west-1b"]
  launch_template {{
    id = aws_launch_template.lt.id
  }}
}}
"""
    report = run_check_on_paths([str(write(tmp_path, {"main.tf": main}))], checkov="off")
    # THEN Terraform makes both blocks: the data volume is seen and SPOT008 names it
    assert [(f.resource, f.message.split(" when ")[0]) for f in report.findings if f.rule_id == "SPOT008"] == [
        ("aws_launch_template.lt", "aws_launch_template.lt deletes data volume(s) /dev/sdf")]


def test_dynamic_over_an_unknown_collection_is_undecided_not_skipped(tmp_path):
    # GIVEN the instance_requirements override iterates a variable with no default (unknown before apply)
    extra = 'variable "reqs" {}\n'
    report = run_check_on_paths([str(write(tmp_path, {"main.tf": group(["m6a.large", "m6i.large"], "var.reqs", extra)}))], checkov="off")
    # THEN the types cannot be counted: SPOT001 says UNDECIDED, and no diversity rule fires on a guess
    assert fired(report, "SPOT001", "SPOT002", "SPOT015") == [("SPOT001", "aws_autoscaling_group.g", False)]
    [f] = [f for f in report.findings if f.rule_id == "SPOT001"]
    assert "not known before apply" in f.message


def test_dynamic_over_an_unknown_mixed_instances_policy_makes_the_group_maybe_spot(tmp_path):
    # GIVEN the whole mixed_instances_policy is a dynamic block over an unknown flag, one type, one subnet
    text = '''
variable "mixed" {}
resource "aws_autoscaling_group" "g" {
  vpc_zone_identifier = ["subnet-1"]
  capacity_rebalance  = true
  dynamic "mixed_instances_policy" {
    for_each = var.mixed ? [1] : []
    content {
      instances_distribution {
        on_demand_percentage_above_base_capacity = 0
      }
    }
  }
}
'''
    report = run_check_on_paths([str(write(tmp_path, {"main.tf": text}))], checkov="off")
    # THEN the group may be spot: its single zone is reported undecided ("if ... runs spot"), not passed
    [f] = [f for f in report.findings if f.rule_id == "SPOT003"]
    assert (f.decided, f.message.startswith("if aws_autoscaling_group.g runs spot")) == (False, True)
    assert report.maybe_spot_capacity == ["aws_autoscaling_group.g"] and not report.no_spot_capacity


# --- instance keys and roots ------------------------------------------------------------------------------

def test_count_instances_are_distinct_findings(tmp_path):
    # GIVEN a spot group with count = 2 and capacity rebalance off
    text = group(["m6i.large", "m6a.large", "m7i.large"], "[]").replace("capacity_rebalance  = true", "count = 2\n  capacity_rebalance = false")
    report = run_check_on_paths([str(write(tmp_path, {"main.tf": text}))], checkov="off")
    # THEN each instance is its own finding, addressed as Terraform does
    assert fired(report, "SPOT004") == [("SPOT004", "aws_autoscaling_group.g[0]", True), ("SPOT004", "aws_autoscaling_group.g[1]", True)]


def test_several_roots_in_one_run_are_attributed_in_text(tmp_path):
    # GIVEN two roots calling one local module whose group has capacity rebalance off
    module = group(["m6i.large", "m6a.large", "m7i.large"], "[]").replace("capacity_rebalance  = true", "capacity_rebalance = false")
    call = 'module "g" {\n  source = "../shared"\n}\n'
    write(tmp_path, {"shared/main.tf": module, "staging/main.tf": call, "prod/main.tf": call})
    report = run_check_on_paths([str(tmp_path)], checkov="off")
    text = render_text(report)
    # THEN one finding per root, and the text names the root of each
    lines = [line for line in text.splitlines() if line.startswith("WARNING  SPOT004")]
    assert len(lines) == 2
    assert any(line.endswith(f"[root {Path(tmp_path / 'prod').resolve()}]") or line.endswith("prod]") for line in lines)
    assert any(line.endswith("staging]") for line in lines)


# --- node groups, fleets, no spot at all ---------------------------------------------------------------------

def test_node_group_whose_capacity_type_is_a_variable_is_undecided(tmp_path):
    # GIVEN an EKS node group with capacity_type from a variable without default, one type, one subnet
    text = '''
variable "capacity_type" {}
resource "aws_eks_node_group" "gpu" {
  capacity_type  = var.capacity_type
  instance_types = ["g5.xlarge"]
  subnet_ids     = ["subnet-1"]
}
'''
    report = run_check_on_paths([str(write(tmp_path, {"main.tf": text}))], checkov="off")
    # THEN SPOT001 and SPOT003 are reported undecided ("if ... runs spot"), never silently passed
    assert fired(report, "SPOT001", "SPOT003") == [("SPOT001", "aws_eks_node_group.gpu", False), ("SPOT003", "aws_eks_node_group.gpu", False)]
    assert all(f.message.startswith("if aws_eks_node_group.gpu runs spot") for f in report.findings if f.rule_id in ("SPOT001", "SPOT003"))


def test_gpu_ec2_fleet_with_one_type_in_one_zone_and_a_fleet_with_unknown_types(tmp_path):
    # GIVEN a GPU inference EC2 fleet on spot: one override, g5.xlarge in one subnet; and a spot fleet whose
    #   override types come from an unknown variable, over subnets in two zones
    text = '''
variable "types" {}
resource "aws_ec2_fleet" "inference" {
  launch_template_config {
    launch_template_specification {
      launch_template_id = "lt-1"
      version            = "$Latest"
    }
    override {
      instance_type = "g5.xlarge"
      subnet_id     = "subnet-a"
    }
  }
  spot_options {
    allocation_strategy = "priceCapacityOptimized"
  }
  target_capacity_specification {
    default_target_capacity_type = "spot"
    total_target_capacity        = 2
  }
}
resource "aws_spot_fleet_request" "batch" {
  iam_fleet_role      = "arn:aws:iam::123456789012:role/fleet"
  target_capacity     = 4
  allocation_strategy = "priceCapacityOptimized"
  launch_template_config {
    launch_template_specification {
      id      = "lt-2"
      version = "1"
    }
    dynamic "overrides" {
      for_each = var.types
      content {
        instance_type = overrides.value
        subnet_id     = "subnet-b"
      }
    }
  }
}
'''
    report = run_check_on_paths([str(write(tmp_path, {"main.tf": text}))], checkov="off")
    # THEN the GPU fleet gets SPOT001 and SPOT003; the other fleet's types and zones are undecided
    assert fired(report, "SPOT001", "SPOT002", "SPOT003", "SPOT015") == [
        ("SPOT001", "aws_ec2_fleet.inference", True), ("SPOT001", "aws_spot_fleet_request.batch", False),
        ("SPOT003", "aws_ec2_fleet.inference", True), ("SPOT003", "aws_spot_fleet_request.batch", False)]


def test_diverse_spot_fleet_passes_the_diversity_and_zone_rules(tmp_path):
    # GIVEN a spot fleet over three families in two zones
    overrides = "".join(f'    overrides {{\n      instance_type = "{t}"\n      availability_zone = "{z}"\n    }}\n'
                        for t in ("m6i.large", "m6a.large", "r7i.large") for z in ("eu-west-1a", "eu-west-1b"))
    text = ('resource "aws_spot_fleet_request" "f" {\n  iam_fleet_role = "arn:aws:iam::123456789012:role/fleet"\n  target_capacity = 4\n'
            '  allocation_strategy = "priceCapacityOptimized"\n  launch_template_config {\n    launch_template_specification {\n'
            '      id = "lt-1"\n      version = "1"\n    }\n' + overrides + '  }\n}\n')
    report = run_check_on_paths([str(write(tmp_path, {"main.tf": text}))], checkov="off")
    # THEN none of SPOT001/002/003/015 fires, and the fleet is counted as spot capacity
    assert fired(report, "SPOT001", "SPOT002", "SPOT003", "SPOT015") == []
    assert report.spot_capacity == ["aws_spot_fleet_request.f"]


def test_a_run_with_no_spot_capacity_says_so(tmp_path, capsys):
    # GIVEN a configuration with an on-demand group only
    text = 'resource "aws_autoscaling_group" "od" {\n  min_size = 1\n  max_size = 2\n  availability_zones = ["eu-west-1a"]\n}\n'
    write(tmp_path, {"main.tf": text})
    # WHEN checked, as text and as JSON
    code, out, _err = cli(["check", str(tmp_path), "--no-checkov"], capsys)
    code_json, out_json, _ = cli(["check", str(tmp_path), "--no-checkov", "--format", "json"], capsys)
    # THEN it passes, and says plainly that nothing launches spot (a line in text, a field in JSON)
    assert code == code_json == 0
    assert "no spot capacity recognised" in out
    doc = json.loads(out_json)
    assert (doc["no_spot_capacity"], doc["spot_capacity"]["found"]) == (True, 0)


def test_a_clean_spot_configuration_does_not_claim_no_spot_capacity(tmp_path):
    # GIVEN a spot group (three families, two zones)
    report = run_check_on_paths([str(write(tmp_path, {"main.tf": group(["m6i.large", "m6a.large", "r7i.large"], "[]")}))], checkov="off")
    # THEN the report knows it judged spot capacity
    assert report.spot_capacity == ["aws_autoscaling_group.g"] and not report.no_spot_capacity
    assert "no spot capacity recognised" not in render_text(report)


# --- SPOT017 on v1beta1 ---------------------------------------------------------------------------------

@pytest.mark.parametrize("api, wanted, unwanted", [
    ("karpenter.sh/v1beta1", "consolidationPolicy: WhenEmpty with consolidateAfter: 5m", "v1: set disruption.consolidateAfter"),
    ("karpenter.sh/v1", "v1: set disruption.consolidateAfter to 5m", "v1beta1"),
])
def test_spot017_fix_matches_the_node_pool_api_version(tmp_path, api, wanted, unwanted):
    # GIVEN a spot NodePool consolidating when underutilized with Karpenter's defaults
    policy = "WhenUnderutilized" if api.endswith("v1beta1") else "WhenEmptyOrUnderutilized"
    pool = (f"apiVersion: {api}\nkind: NodePool\nmetadata:\n  name: gpu\nspec:\n  disruption:\n    consolidationPolicy: {policy}\n"
            "  template:\n    spec:\n      requirements:\n        - key: karpenter.sh/capacity-type\n          operator: In\n"
            "          values: [spot, on-demand]\n")
    write(tmp_path, {"pool.yaml": pool})
    report = run_check_on_paths([str(tmp_path / "pool.yaml")], checkov="off")
    # THEN the fix is the one that version accepts (v1beta1 refuses consolidateAfter with WhenUnderutilized)
    [f] = [f for f in report.findings if f.rule_id == "SPOT017"]
    assert wanted in f.fix and unwanted not in f.fix


# --- inputs that are too large, binary or not UTF-8 -------------------------------------------------------

def test_binary_tf_file_is_a_user_error(tmp_path, capsys):
    # GIVEN a directory whose .tf file is binary
    (tmp_path / "main.tf").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)))
    # WHEN checked / THEN exit 1, one error line naming the file, a next: hint, no traceback
    code, _out, err = cli(["check", str(tmp_path), "--no-checkov"], capsys)
    assert code == 1
    assert err.splitlines() == [f"Error: {tmp_path / 'main.tf'} is a binary file, not Terraform text: move it out of the directory "
                                "(Terraform would refuse it too)", f"  next: file {tmp_path / 'main.tf'}"]


def test_non_utf8_tf_file_is_a_user_error(tmp_path, capsys):
    # GIVEN a .tf file in Latin-1 (a comment with an accented letter)
    (tmp_path / "main.tf").write_bytes('# r\u00e9seau\nresource "aws_s3_bucket" "b" {}\n'.encode("latin-1"))
    code, _out, err = cli(["check", str(tmp_path), "--no-checkov"], capsys)
    # THEN exit 1 with the byte and line, and a next: hint
    assert code == 1
    assert err.splitlines()[0] == (f"Error: {tmp_path / 'main.tf'} is not UTF-8 text (byte 0xe9 on line 1): Terraform reads UTF-8 only; "
                                   "convert it (iconv) or move it out of the directory")
    assert err.splitlines()[1] == f"  next: file -i {tmp_path / 'main.tf'}"
    assert "Traceback" not in err and "Internal error" not in err


def test_huge_tfvars_is_refused_before_it_is_parsed(tmp_path, capsys):
    # GIVEN a root whose terraform.tfvars is over the default cap (a sparse file: its size, not its content, matters)
    write(tmp_path, {"main.tf": 'variable "x" {}\n'})
    with open(tmp_path / "terraform.tfvars", "wb") as f:
        f.truncate(int((MAX_HCL_MB + 1) * 1024 * 1024))
    code, _out, err = cli(["check", str(tmp_path), "--no-checkov"], capsys)
    # THEN exit 1 naming the file, its size, the cap, the memory it would take and what to do
    assert code == 1
    first, hint = err.splitlines()
    assert first.startswith(f"Error: {tmp_path / 'terraform.tfvars'} is {MAX_HCL_MB + 1:.1f} MB, over the {MAX_HCL_MB} MB spotkit check "
                            "parses from one HCL file (parsing it would take about 0.9 GB of memory); check a plan instead")
    assert hint == f"  next: SPOTKIT_CHECK_MAX_HCL_MB={MAX_HCL_MB + 2} spotkit check {tmp_path}"


def test_the_cap_can_be_raised_and_is_validated(tmp_path, capsys, monkeypatch):
    # GIVEN a 30 kB tfvars and a cap lowered to 0.01 MB
    write(tmp_path, {"main.tf": 'variable "x" {}\n', "terraform.tfvars": "x = " + json.dumps(["a" * 10] * 2500) + "\n"})
    monkeypatch.setenv("SPOTKIT_CHECK_MAX_HCL_MB", "0.01")
    code, _out, err = cli(["check", str(tmp_path), "--no-checkov"], capsys)
    assert code == 1 and "over the 0.01 MB" in err
    # WHEN the cap is raised as the hint says / THEN the check runs
    monkeypatch.setenv("SPOTKIT_CHECK_MAX_HCL_MB", "1")
    assert cli(["check", str(tmp_path), "--no-checkov"], capsys)[0] == 0
    # and a cap that is not a positive number is a user error naming the variable
    monkeypatch.setenv("SPOTKIT_CHECK_MAX_HCL_MB", "lots")
    code, _out, err = cli(["check", str(tmp_path), "--no-checkov"], capsys)
    assert code == 1 and err.splitlines()[0] == "Error: SPOTKIT_CHECK_MAX_HCL_MB='lots' is not a positive number of megabytes"


def test_dynamic_hooks_and_metadata_over_unknown_collections_are_undecided_not_failed(tmp_path):
    # GIVEN a spot group whose termination hooks, and a launch template whose metadata options, are dynamic
    #   blocks over variables with no default (a module's inputs, typically)
    text = group(["m6i.large", "m6a.large", "r7i.large"], "[]").replace(
        'launch_template_id = "lt-0123456789abcdef0"', "launch_template_id = aws_launch_template.lt.id") + '''
variable "hooks" {}
variable "metadata" {}
resource "aws_launch_template" "lt" {
  dynamic "metadata_options" {
    for_each = var.metadata
    content {
      http_tokens = metadata_options.value.http_tokens
    }
  }
}
resource "aws_autoscaling_group" "h" {
  vpc_zone_identifier = ["subnet-1", "subnet-2"]
  capacity_rebalance  = true
  mixed_instances_policy {
    instances_distribution {
      on_demand_percentage_above_base_capacity = 0
      spot_allocation_strategy                 = "price-capacity-optimized"
    }
    launch_template {
      launch_template_specification {
        launch_template_id = aws_launch_template.lt.id
      }
      override {
        instance_type = "m6i.large"
      }
      override {
        instance_type = "c7i.large"
      }
      override {
        instance_type = "r7a.large"
      }
    }
  }
  dynamic "initial_lifecycle_hook" {
    for_each = var.hooks
    content {
      name                 = initial_lifecycle_hook.value.name
      lifecycle_transition = initial_lifecycle_hook.value.transition
    }
  }
}
'''
    report = run_check_on_paths([str(write(tmp_path, {"main.tf": text}))], checkov="off")
    # THEN SPOT005 on the group with dynamic hooks and SPOT007 on the template are undecided, not errors
    assert fired(report, "SPOT005", "SPOT007") == [("SPOT005", "aws_autoscaling_group.g", True),
                                                   ("SPOT005", "aws_autoscaling_group.h", False),
                                                   ("SPOT007", "aws_launch_template.lt", False)]


def test_config_suppression_globs_treat_instance_brackets_literally(tmp_path):
    # GIVEN two instances of a spot group with capacity rebalance off, suppressed for one key by the config
    text = group(["m6i.large", "m6a.large", "m7i.large"], "[]").replace(
        "capacity_rebalance  = true", 'for_each = toset(["blue", "green"])\n  capacity_rebalance = false')
    write(tmp_path, {"main.tf": text})
    config = {"check": {"suppress": [{"id": "SPOT004", "resource": 'aws_autoscaling_group.g["blue"]', "reason": "drained by hand"}]}}
    report = run_check_on_paths([str(tmp_path)], config=config, checkov="off")
    # THEN only that instance is suppressed ([...] is not a character class)
    assert sorted((f.resource, f.suppressed) for f in report.findings if f.rule_id == "SPOT004") == [
        ('aws_autoscaling_group.g["blue"]', True), ('aws_autoscaling_group.g["green"]', False)]
    # and a [*] glob covers every instance
    config["check"]["suppress"][0]["resource"] = "aws_autoscaling_group.g[*]"
    report = run_check_on_paths([str(tmp_path)], config=config, checkov="off")
    assert all(f.suppressed for f in report.findings if f.rule_id == "SPOT004")


def test_non_utf8_node_pool_yaml_is_a_user_error(tmp_path, capsys):
    # GIVEN a NodePool file saved in Latin-1
    (tmp_path / "pool.yaml").write_bytes("apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata:\n  name: caf\u00e9\n".encode("latin-1"))
    code, _out, err = cli(["check", str(tmp_path / "pool.yaml"), "--no-checkov"], capsys)
    # THEN exit 1 naming the file, never "Internal error"
    assert code == 1
    assert err.splitlines()[0].startswith(f"Error: {tmp_path / 'pool.yaml'} is not UTF-8 text (byte 0xe9 on line 4)")
