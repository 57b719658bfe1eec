"""Run one ``terraform apply`` through spotkit's ``TerraformRunner`` in a child process (the test kills or
interrupts this process, as a user would kill or Ctrl-C ``spotkit apply``).

``python -m tests.support.terraform_child WORKDIR``: prints ``following`` once Terraform runs, each
progress line as ``line: ...``, and ends with exit 0, or exit 1 and ``error: MESSAGE`` on stderr.
"""

from __future__ import annotations

import sys


def main(workdir: str) -> int:
    from spotkit.deploy.binary import find_terraform
    from spotkit.deploy.runner import IsFlagged, TerraformRunner
    from spotkit.errors import ToolkitError

    runner = TerraformRunner(workdir, find_terraform())
    try:
        runner.run("apply", input=False, no_color=IsFlagged, auto_approve=IsFlagged,
                   on_line=lambda line: print(f"line: {line}", flush=True))
    except ToolkitError as exc:
        print(f"error: {exc.message}\nnext: {exc.hint}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
