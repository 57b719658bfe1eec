"""Drive real Terraform (or OpenTofu) over synthesized stacks: plan, apply, destroy, output.

- ``binary``: find ``terraform``/``tofu`` and check its version.
- ``runner``: run one Terraform command in a working directory (argv built by python-terraform).
- ``mirror``: the provider mirror setting and the CLI config it writes (air-gapped use).
- ``local_target``: render a stack for the embedded AWS emulator (endpoints, credentials, pruning).
- ``planning``: read a plan's JSON: adds / changes / destroys, replacements, data loss.
- ``workflow``: per-target working directories and the plan/apply/destroy/output steps.
"""
