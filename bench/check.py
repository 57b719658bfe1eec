"""bench/check: ``spotkit check`` on a generated 100-file HCL directory, against checkov's own run on
the same directory (when checkov is installed: the optional ``check`` extra; the bench says so when
it is not, and then prints spotkit's figures alone).

The directory: 100 ``.tf`` files, each a spot group (launch template, mixed instances policy with a
dynamic override block over a local list, subnets from count, a termination hook in another file's
resource, a target group), plus variables and locals, so every part of the loader is exercised.
Both tools run as fresh processes (what CI or pre-commit starts), alternating, ``--runs`` times
each; the median wall time is printed with the ratio.

``--layout modules`` generates instead a repository the way teams lay one out: ``envs/<env>/``
roots (each a ``.tf`` file per service calling a local module with ``for_each`` over blue and green),
and ``modules/spot_group`` (variables typed with ``optional()`` defaults, ``dynamic`` overrides, a
hook, a target group) plus ``modules/network`` (subnets with ``count``), ``--files`` files in all.
Issue 26's target is ``spotkit check`` on such a 60-file repository under 3 s.

``--baseline REF`` also runs the same command with the code of git revision REF (extracted with
``git archive`` into a temporary directory, same interpreter, same venv), alternating with the
current code: the fair baseline for "did this change make check slower" is the previous release of
the very same tool on the very same input.

    python -m bench.check [--runs 3] [--files 100] [--layout flat|modules] [--baseline REF]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from spotkit.check.checkov import find_checkov

ROOT = Path(__file__).resolve().parents[1]

# What every layout's shared file holds besides its inputs: the interruption rule, its target, the
# checkpoint file system.
SPOT_EVENTS = """resource "aws_cloudwatch_event_rule" "spot" {
  event_pattern = jsonencode({ source = ["aws.ec2"], "detail-type" = ["EC2 Spot Instance Interruption Warning"] })
}

resource "aws_cloudwatch_event_target" "spot" {
  rule = aws_cloudwatch_event_rule.spot.name
  arn  = "arn:aws:sqs:eu-west-1:123456789012:spot-events"
}

resource "aws_efs_file_system" "checkpoints" {}
"""

FILE = """
locals {{
  types_{i} = ["m6i.large", "m6a.large", "m7i.large"]
}}

resource "aws_launch_template" "lt_{i}" {{
  name_prefix   = "${{var.prefix}}-{i}-"
  image_id      = var.ami
  instance_type = "m6i.large"
  metadata_options {{
    http_tokens                 = "required"
    http_put_response_hop_limit = 2
  }}
}}

resource "aws_subnet" "s_{i}" {{
  count             = 2
  vpc_id            = "vpc-0123456789abcdef0"
  cidr_block        = "10.{i}.${{count.index}}.0/24"
  availability_zone = var.azs[count.index]
}}

resource "aws_lb_target_group" "tg_{i}" {{
  name                 = "tg-{i}"
  port                 = 80
  protocol             = "HTTP"
  vpc_id               = "vpc-0123456789abcdef0"
  deregistration_delay = 90
}}

resource "aws_autoscaling_group" "g_{i}" {{
  name                = "${{var.prefix}}-{i}"
  min_size            = 0
  max_size            = 4
  capacity_rebalance  = true
  vpc_zone_identifier = [aws_subnet.s_{i}[0].id, aws_subnet.s_{i}[1].id]
  target_group_arns   = [aws_lb_target_group.tg_{i}.arn]

  mixed_instances_policy {{
    instances_distribution {{
      on_demand_base_capacity                  = 1
      on_demand_percentage_above_base_capacity = 0
      spot_allocation_strategy                 = "price-capacity-optimized"
    }}
    launch_template {{
      launch_template_specification {{
        launch_template_id = aws_launch_template.lt_{i}.id
        version            = "$Latest"
      }}
      dynamic "override" {{
        for_each = local.types_{i}
        content {{
          instance_type = override.value
        }}
      }}
    }}
  }}
}}

resource "aws_autoscaling_lifecycle_hook" "drain_{prev}" {{
  name                   = "drain-{prev}"
  autoscaling_group_name = aws_autoscaling_group.g_{prev}.name
  lifecycle_transition   = "autoscaling:EC2_INSTANCE_TERMINATING"
  heartbeat_timeout      = 300
}}
"""

COMMON = """
variable "prefix" {
  default = "bench"
}

variable "ami" {
  default = "ami-0123456789abcdef0"
}

variable "azs" {
  default = ["eu-west-1a", "eu-west-1b"]
}

""" + SPOT_EVENTS


MODULE_MAIN = """
resource "aws_launch_template" "this" {
  name_prefix   = "${var.name}-"
  image_id      = var.ami
  instance_type = var.spot.types[0]
  metadata_options {
    http_tokens                 = var.spot.http_tokens
    http_put_response_hop_limit = 2
  }
  dynamic "block_device_mappings" {
    for_each = var.spot.data_volumes
    content {
      device_name = block_device_mappings.value.device
      ebs {
        volume_size           = block_device_mappings.value.size
        delete_on_termination = false
      }
    }
  }
}

resource "aws_autoscaling_group" "this" {
  name                = var.name
  min_size            = 0
  max_size            = var.spot.max_size
  capacity_rebalance  = true
  vpc_zone_identifier = var.subnet_ids
  target_group_arns   = [aws_lb_target_group.this.arn]

  mixed_instances_policy {
    instances_distribution {
      on_demand_base_capacity                  = var.spot.on_demand_base
      on_demand_percentage_above_base_capacity = 0
      spot_allocation_strategy                 = var.spot.allocation_strategy
    }
    launch_template {
      launch_template_specification {
        launch_template_id = aws_launch_template.this.id
        version            = "$Latest"
      }
      dynamic "override" {
        for_each = var.spot.types
        content {
          instance_type = override.value
        }
      }
      dynamic "override" {
        for_each = var.spot.requirements == null ? [] : [var.spot.requirements]
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

MODULE_VARIABLES = """
variable "name" {
  type = string
}

variable "ami" {
  type    = string
  default = "ami-0123456789abcdef0"
}

variable "subnet_ids" {
  type = list(string)
}

variable "spot" {
  type = object({
    types               = optional(list(string), ["m6i.large", "m6a.large", "m7i.large"])
    max_size            = optional(number, 4)
    on_demand_base      = optional(number, 1)
    allocation_strategy = optional(string, "price-capacity-optimized")
    http_tokens         = optional(string, "required")
    requirements        = optional(object({ vcpus = number }))
    data_volumes = optional(list(object({
      device = optional(string, "/dev/sdf")
      size   = optional(number, 100)
    })), [])
  })
  default = {}
}
"""

MODULE_HOOKS = """
resource "aws_autoscaling_lifecycle_hook" "drain" {
  name                   = "${var.name}-drain"
  autoscaling_group_name = aws_autoscaling_group.this.name
  lifecycle_transition   = "autoscaling:EC2_INSTANCE_TERMINATING"
  heartbeat_timeout      = 300
}

resource "aws_lb_target_group" "this" {
  name                 = var.name
  port                 = 80
  protocol             = "HTTP"
  vpc_id               = "vpc-0123456789abcdef0"
  deregistration_delay = 90
}
"""

MODULE_OUTPUTS = """
output "group_name" {
  value = aws_autoscaling_group.this.name
}
"""

NETWORK_MAIN = """
variable "azs" {
  type    = list(string)
  default = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
}

resource "aws_subnet" "private" {
  count             = length(var.azs)
  vpc_id            = "vpc-0123456789abcdef0"
  cidr_block        = "10.0.${count.index}.0/24"
  availability_zone = var.azs[count.index]
}
"""

NETWORK_OUTPUTS = """
output "subnet_ids" {
  value = aws_subnet.private[*].id
}
"""

ENV_COMMON = """
module "network" {
  source = "../../modules/network"
}

locals {
  subnet_ids = ["subnet-0a", "subnet-0b"]
}

""" + SPOT_EVENTS

SERVICE = """
module "svc_{i}" {{
  source     = "../../modules/spot_group"
  for_each   = toset(["blue", "green"])
  name       = "{env}-svc-{i}-${{each.key}}"
  subnet_ids = local.subnet_ids
  spot = {{
    max_size     = {size}
    data_volumes = [{{ size = 200 }}]
  }}
}}
"""


def generate_modules(directory: Path, files: int) -> None:
    """A repository of ``files`` .tf files: 6 in two local modules, the rest spread over three
    environment roots (one shared file each, then one file per service)."""
    modules = {"modules/spot_group/main.tf": MODULE_MAIN, "modules/spot_group/variables.tf": MODULE_VARIABLES,
               "modules/spot_group/hooks.tf": MODULE_HOOKS, "modules/spot_group/outputs.tf": MODULE_OUTPUTS,
               "modules/network/main.tf": NETWORK_MAIN, "modules/network/outputs.tf": NETWORK_OUTPUTS}
    envs = ["prod", "staging", "dev"]
    texts = dict(modules)
    for env in envs:
        texts[f"envs/{env}/common.tf"] = ENV_COMMON
    remaining = max(files - len(texts), 0)
    for i in range(remaining):
        env = envs[i % len(envs)]
        texts[f"envs/{env}/svc_{i:03d}.tf"] = SERVICE.format(i=i, env=env, size=2 + i % 5)
    write_files(directory, texts)


def write_files(directory: Path, texts: dict[str, str]) -> None:
    """Write each text at its path under ``directory`` (folders made as needed)."""
    for name, text in texts.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def extract(ref: str, into: Path) -> Path:
    """The tree of git revision ``ref`` of this repository, written under ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def generate(directory: Path, files: int) -> None:
    """``files`` .tf files (one of them also holds the variables and shared resources)."""
    texts = {f"group_{i:03d}.tf": FILE.format(i=i, prev=(i - 1) % files) for i in range(files)}
    if files:
        texts["group_000.tf"] = COMMON + texts["group_000.tf"]
    write_files(directory, texts)


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, CPU seconds of the child process tree, the process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), proc


@dataclass
class Timings:
    """Wall and CPU seconds of each fresh-process run, per command; ``output``: spotkit's last stdout."""

    spotkit: list[float] = field(default_factory=list)
    spotkit_cpu: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)
    baseline_cpu: list[float] = field(default_factory=list)
    checkov: list[float] = field(default_factory=list)
    checkov_cpu: list[float] = field(default_factory=list)
    output: str = ""


def time_runs(runs: int, spotkit_cmd: list[str], baseline_root: Path | None,
              checkov_cmd: list[str] | None) -> Timings | None:
    """Run spotkit, the baseline and checkov in turn ``runs`` times; None (the failure printed) when
    spotkit or the baseline fails."""
    times = Timings()
    for _ in range(runs):
        seconds, cpu, proc = timed(spotkit_cmd, ROOT)
        if proc.returncode != 0:
            print(proc.stdout[-2000:], proc.stderr[-2000:])
            return None
        times.spotkit.append(seconds)
        times.spotkit_cpu.append(cpu)
        times.output = proc.stdout
        if baseline_root:
            seconds, cpu, base_proc = timed(spotkit_cmd, baseline_root)
            if base_proc.returncode != 0:
                print("baseline failed:", base_proc.stdout[-2000:], base_proc.stderr[-2000:])
                return None
            times.baseline.append(seconds)
            times.baseline_cpu.append(cpu)
        if checkov_cmd:
            seconds, cpu, _proc = timed(checkov_cmd, ROOT)
            times.checkov.append(seconds)
            times.checkov_cpu.append(cpu)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--layout", choices=["flat", "modules"], default="flat",
                        help="flat: one directory of spot groups; modules: env roots calling local modules (issue 26's target)")
    parser.add_argument("--baseline", metavar="REF", help="also time the code of git revision REF on the same input")
    parser.add_argument("--no-checkov", dest="with_checkov", action="store_false", help="skip checkov even when installed")
    args = parser.parse_args(argv)
    checkov = find_checkov() if args.with_checkov else None
    with tempfile.TemporaryDirectory(prefix="spotkit-bench-check-") as tmp:
        directory = Path(tmp) / "repo"
        directory.mkdir()
        (generate_modules if args.layout == "modules" else generate)(directory, args.files)
        spotkit_cmd = [sys.executable, "-m", "spotkit.cli.main", "check", str(directory), "--no-checkov", "--fail-on", "never"]
        checkov_cmd = [*checkov, "-d", str(directory), "--framework", "terraform", "--compact", "--quiet", "-o", "json",
                       "--skip-download"] if checkov else None
        baseline_root = None
        if args.baseline:
            (Path(tmp) / "baseline").mkdir()
            baseline_root = extract(args.baseline, Path(tmp) / "baseline")
        times = time_runs(args.runs, spotkit_cmd, baseline_root, checkov_cmd)
        if times is None:
            return 1
        summary = times.output.strip().splitlines()
        # in-process: the check itself, without Python start-up and imports
        from spotkit.check import run_check_on_paths

        run_check_on_paths([str(directory)], checkov="off")  # warm imports and the parser's grammar
        start, start_cpu = time.perf_counter(), time.process_time()
        report = run_check_on_paths([str(directory)], checkov="off")
        in_process, in_process_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    spotkit_s = statistics.median(times.spotkit)
    print(f"directory ({args.layout}): {args.files} .tf files, {len(report.files)} read, {len(report.findings)} finding(s) ({summary[-2] if len(summary) > 1 else ''})")
    print(f"machine load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPU(s): wall times grow with it, CPU times do not")
    print(f"spotkit check --no-checkov, fresh process: median wall {spotkit_s:.2f} s, CPU {statistics.median(times.spotkit_cpu):.2f} s "
          f"over {args.runs} run(s) (wall {', '.join(f'{t:.2f}' for t in times.spotkit)})")
    print(f"spotkit check, in process (load + rules, no start-up): wall {in_process:.2f} s, CPU {in_process_cpu:.2f} s")
    print_comparisons(args, times, spotkit_s)
    return 0


def print_comparisons(args: argparse.Namespace, times: Timings, spotkit_s: float) -> None:
    """The baseline's figures, the issue's target, and checkov's (or that it is not installed)."""
    if times.baseline:
        base_s = statistics.median(times.baseline)
        print(f"baseline {args.baseline} (same command, that revision's code), fresh process: median wall {base_s:.2f} s, "
              f"CPU {statistics.median(times.baseline_cpu):.2f} s (wall {', '.join(f'{t:.2f}' for t in times.baseline)}); "
              f"ratio this / baseline: wall {spotkit_s / base_s:.2f}x, CPU {statistics.median(times.spotkit_cpu) / statistics.median(times.baseline_cpu):.2f}x")
    if args.layout == "modules":
        verdict = "under" if spotkit_s < 3.0 else "OVER"
        print(f"target (issue 26): check of a {args.files}-file repository with local modules under 3 s wall: {verdict} ({spotkit_s:.2f} s)")
    if times.checkov:
        checkov_s = statistics.median(times.checkov)
        print(f"checkov -d DIR --framework terraform, fresh process: median wall {checkov_s:.2f} s, CPU {statistics.median(times.checkov_cpu):.2f} s "
              f"over {args.runs} run(s) (wall {', '.join(f'{t:.2f}' for t in times.checkov)})")
        print(f"ratio checkov / spotkit: wall {checkov_s / spotkit_s:.1f}x, CPU {statistics.median(times.checkov_cpu) / statistics.median(times.spotkit_cpu):.1f}x")
    else:
        print("checkov is not installed (optional extra: pip install 'spotkit[check]'), so there is no checkov baseline in this run")


if __name__ == "__main__":
    sys.exit(main())
