"""The one list of what the local emulator changes in moto, applied by every emulator spotkit runs.

``spotkit local start`` (toolkit/rehearsal/local/server.py) and the tests' moto server
(tests/support/moto_server.py) both serve ``server.application()``, which applies every entry of
``PATCHES``: a user rehearsing against the local emulator meets the same AWS behaviour the tests met.
Each entry (``spotkit.rehearsal.local.patches.Patch``) names the AWS calls it changes, what AWS does, what
moto 5.2 does instead and the AWS documentation; ``docs_table()`` is the table of docs/local-target.md
(tests/test_local_emulator_answers_as_aws.py fails when the page and this list differ).
"""

from __future__ import annotations

from spotkit.rehearsal.local.patches import Patch, autoscaling, dynamodb, ec2, ecs, eks, fis, iam, sqs, ssm

PATCHES: tuple[Patch, ...] = (
    *autoscaling.PATCHES, *ec2.PATCHES, *sqs.PATCHES, *ecs.PATCHES, *eks.PATCHES, *iam.PATCHES,
    *dynamodb.PATCHES, *ssm.PATCHES, *fis.PATCHES,
)


def apply_all() -> None:
    """Patch moto in this process with every entry of ``PATCHES`` (each is idempotent)."""
    for patch in PATCHES:
        patch.apply()


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def docs_table() -> str:
    """The Markdown table of every entry, in registry order, as docs/local-target.md shows it."""
    lines = ["| AWS call | what AWS does (and so the emulator) | what moto 5.2 does instead | docs |",
             "|---|---|---|---|"]
    for patch in PATCHES:
        calls = " / ".join(f"`{op}`" if op[0].isupper() else op for op in patch.operations)
        docs = f"[AWS docs]({patch.reference})" if patch.reference else "–"
        lines.append(f"| {patch.service} {calls} | {_cell(patch.aws)} | {_cell(patch.moto)} | {docs} |")
    return "\n".join(lines)
