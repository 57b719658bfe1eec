"""bench/check: ``spotkit check`` on a generated 100-file HCL directory, against checkov's own run on
the same directory (when checkov is installed: the optional ``check`` extra; the bench says so when
it is not, and then prints spotkit's figures alone).

The directory: 100 ``.tf`` files, each a spot group (launch template, mixed instances policy with a
dynamic override block over a local list, subnets from count, a termination hook in another file's
resource, a target group), plus variables and locals, so every part of the loader is exercised.
Both tools run as fresh processes (what CI or pre-commit starts), alternating, ``--runs`` times
each; the median wall time is printed with the ratio.

    python -m bench.check [--runs 3] [--files 100]
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
from pathlib import Path

from toolkit.check.checkov import find_checkov

ROOT = Path(__file__).resolve().parents[1]

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

resource "aws_cloudwatch_event_rule" "spot" {
  event_pattern = jsonencode({ source = ["aws.ec2"], "detail-type" = ["EC2 Spot Instance Interruption Warning"] })
}

resource "aws_cloudwatch_event_target" "spot" {
  rule = aws_cloudwatch_event_rule.spot.name
  arn  = "arn:aws:sqs:eu-west-1:123456789012:spot-events"
}

resource "aws_efs_file_system" "checkpoints" {}
"""


def generate(directory: Path, files: int) -> None:
    """``files`` .tf files (one of them also holds the variables and shared resources)."""
    for i in range(files):
        text = FILE.format(i=i, prev=(i - 1) % files)
        if i == 0:
            text = COMMON + text
        (directory / f"group_{i:03d}.tf").write_text(text)


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, CPU seconds of the child process tree, the process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), proc


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--files", type=int, default=100)
    args = parser.parse_args(argv)
    checkov = find_checkov()
    with tempfile.TemporaryDirectory(prefix="spotkit-bench-check-") as tmp:
        directory = Path(tmp)
        generate(directory, args.files)
        spotkit_cmd = [sys.executable, "-m", "toolkit.cli.main", "check", str(directory), "--no-checkov", "--fail-on", "never"]
        checkov_cmd = [*checkov, "-d", str(directory), "--framework", "terraform", "--compact", "--quiet", "-o", "json",
                       "--skip-download"] if checkov else None
        spotkit_times, checkov_times, spotkit_cpu, checkov_cpu = [], [], [], []
        for _ in range(args.runs):
            seconds, cpu, proc = timed(spotkit_cmd, ROOT)
            if proc.returncode != 0:
                print(proc.stdout[-2000:], proc.stderr[-2000:])
                return 1
            spotkit_times.append(seconds)
            spotkit_cpu.append(cpu)
            if checkov_cmd:
                seconds, cpu, _proc = timed(checkov_cmd, ROOT)
                checkov_times.append(seconds)
                checkov_cpu.append(cpu)
        summary = proc.stdout.strip().splitlines()
        # in-process: the check itself, without Python start-up and imports
        from toolkit.check import run_check_on_paths

        run_check_on_paths([str(directory)], checkov="off")  # warm imports and the parser's grammar
        start, start_cpu = time.perf_counter(), time.process_time()
        report = run_check_on_paths([str(directory)], checkov="off")
        in_process, in_process_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    spotkit_s = statistics.median(spotkit_times)
    print(f"directory: {args.files} .tf files, {len(report.files)} read, {len(report.findings)} finding(s) ({summary[-2] if len(summary) > 1 else ''})")
    print(f"machine load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPU(s): wall times grow with it, CPU times do not")
    print(f"spotkit check --no-checkov, fresh process: median wall {spotkit_s:.2f} s, CPU {statistics.median(spotkit_cpu):.2f} s "
          f"over {args.runs} run(s) (wall {', '.join(f'{t:.2f}' for t in spotkit_times)})")
    print(f"spotkit check, in process (load + rules, no start-up): wall {in_process:.2f} s, CPU {in_process_cpu:.2f} s")
    if checkov_times:
        checkov_s = statistics.median(checkov_times)
        print(f"checkov -d DIR --framework terraform, fresh process: median wall {checkov_s:.2f} s, CPU {statistics.median(checkov_cpu):.2f} s "
              f"over {args.runs} run(s) (wall {', '.join(f'{t:.2f}' for t in checkov_times)})")
        print(f"ratio checkov / spotkit: wall {checkov_s / spotkit_s:.1f}x, CPU {statistics.median(checkov_cpu) / statistics.median(spotkit_cpu):.1f}x")
    else:
        print("checkov is not installed (optional extra: pip install 'spotkit[check]'), so there is no checkov baseline in this run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
