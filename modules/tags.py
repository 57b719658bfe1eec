"""AWS's limits on tags, enforced at synth (in the constructor), so `terraform apply` never meets them.

Limits (AWS "Tag naming limits and requirements", the same for EC2, Auto Scaling, IAM and EBS):

- ``MAX_KEY_CHARS``: a key is 1 to 128 Unicode characters;
- ``MAX_VALUE_CHARS``: a value is 0 to 256 Unicode characters;
- ``MAX_TAGS``: at most 50 user tags on one resource;
- ``RESERVED_PREFIX``: keys starting with ``aws:`` are AWS's own and cannot be set;
- with instance tags in the instance metadata (``instance_metadata_tags = "enabled"``, which spotkit's
  groups and instances use so the agent can read its group), keys may only hold letters, digits and
  ``+ - = . _ : @`` (``METADATA_KEY``): no spaces, no ``/``, and not ``.`` or ``..`` alone. EC2 refuses
  other keys when it launches the instance, long after the plan looked fine.
"""

from __future__ import annotations

import re
from typing import Mapping

from spotkit.errors import ValidationError

MAX_KEY_CHARS = 128
MAX_VALUE_CHARS = 256
MAX_TAGS = 50
RESERVED_PREFIX = "aws:"
METADATA_KEY = re.compile(r"^[A-Za-z0-9+\-=._:@]+$")


def _short(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:37]}..."


def check_tags(tags: Mapping[str, str], where: str, *, in_instance_metadata: bool = False) -> None:
    """Raise ``ValidationError`` naming the tag and the AWS limit it breaks."""
    if len(tags) > MAX_TAGS:
        raise ValidationError(f"{where}: {len(tags)} tags; AWS allows at most {MAX_TAGS} on a resource")
    for key, value in tags.items():
        key, value = str(key), "" if value is None else str(value)
        if not key:
            raise ValidationError(f"{where}: a tag key is empty; AWS tag keys are 1 to {MAX_KEY_CHARS} characters")
        if len(key) > MAX_KEY_CHARS:
            raise ValidationError(f"{where}: tag key {_short(key)!r} is {len(key)} characters; AWS allows at most "
                                  f"{MAX_KEY_CHARS} in a tag key")
        if len(value) > MAX_VALUE_CHARS:
            raise ValidationError(f"{where}: the value of tag {_short(key)!r} is {len(value)} characters; AWS allows at "
                                  f"most {MAX_VALUE_CHARS} in a tag value")
        if key.lower().startswith(RESERVED_PREFIX):
            raise ValidationError(f"{where}: tag key {_short(key)!r} starts with {RESERVED_PREFIX!r}, which AWS keeps "
                                  "for its own tags")
        if in_instance_metadata and (not METADATA_KEY.match(key) or key in (".", "..")):
            raise ValidationError(f"{where}: tag key {_short(key)!r} cannot be read from the instance metadata (tags "
                                  "there allow only letters, digits and + - = . _ : @); EC2 refuses it at launch")
