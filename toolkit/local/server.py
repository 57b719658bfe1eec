"""The emulator process: moto's server with fixes for moto bugs that break real Terraform applies.

Run as ``python -m toolkit.local.server -H 127.0.0.1 -p PORT`` (``toolkit.local.emulator.start`` does).
Each fix is listed in ``MOTO_FIXES`` with the reason; none invents behavior AWS does not have.
"""

from __future__ import annotations

import sys

MOTO_FIXES: list[tuple[str, str]] = [
    ("autoscaling UpdateAutoScalingGroup keeps MixedInstancesPolicy when the call leaves it out",
     "moto 5.2 sets it to None on every update; AWS keeps it. The aws provider creates a group that has "
     "initial lifecycle hooks at size 0 and then updates its sizes, so the policy vanished under moto"),
]


def _patch_autoscaling() -> None:
    from moto.autoscaling.models import FakeAutoScalingGroup

    original = FakeAutoScalingGroup.update

    def update(self, *args, **kwargs):
        keep = self.mixed_instances_policy
        if kwargs.get("mixed_instances_policy") is None and keep is not None and not kwargs.get("launch_template") \
                and not kwargs.get("launch_config_name"):
            import copy

            # moto stored the spec with both the id and the name, which its own validation refuses.
            kept = copy.deepcopy(keep)
            spec = (kept.get("LaunchTemplate") or {}).get("LaunchTemplateSpecification") or {}
            if spec.get("LaunchTemplateId"):
                spec.pop("LaunchTemplateName", None)
            kwargs["mixed_instances_policy"] = kept
        return original(self, *args, **kwargs)

    FakeAutoScalingGroup.update = update


def main(argv: list[str] | None = None) -> None:
    _patch_autoscaling()
    from moto.server import main as moto_main

    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
