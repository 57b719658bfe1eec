"""Read Terraform HCL (``*.tf``, with any ``*.tf.json`` beside them) into the resource graph.

A directory is one Terraform module, as Terraform sees it: every ``.tf`` and ``.tf.json`` file in it,
references across files included. Values are evaluated as far as they can be known before a plan:

- literals, lists, objects, string templates;
- ``var.x`` (the variable's default, ``terraform.tfvars`` / ``*.auto.tfvars`` in the root module, or
  the module call's argument; null to a ``nullable = false`` variable gives its default), ``local.x``,
  ``module.m.output`` of a local module;
- ``count`` / ``for_each`` (``count.index``, ``each.key``, ``each.value``) and ``dynamic`` blocks
  (``<iterator>.key`` / ``.value``), when the collection is known;
- conditionals, ``==`` / ``!=`` / ``&&`` / ``||`` / ``!``, ``for`` expressions and a few pure functions
  (``lookup``, ``merge``, ``concat``, ``try``, ``can``, ``coalesce``, ``length``, ``jsonencode``...) on
  known values; an attribute a known object does not set is null (``optional()`` attributes).

Anything else (other functions, arithmetic, splats, data sources, an attribute computed at apply
time) is *unknown*: it is kept as a ``${...}`` string, the form the rules already treat as
"cannot tell", so a rule never guesses. References to resources stay in that text
(``${aws_launch_template.x.id}``, with ``module.m.`` in front inside a module), which is how the
rules follow references, exactly as in Terraform JSON.

The package, in the order a value travels: ``parse`` (files to raw values), ``evaluate`` (scopes,
``count`` / ``for_each``, ``dynamic`` blocks), ``expressions`` (operators, ``for``, calls),
``functions`` (Terraform's built-ins), ``constraints`` (``optional()`` types), ``load`` (module
instances, the loader); ``values`` holds the types they share.

Local modules (``source = "./..."`` or ``"../..."``) are followed: their resources get addresses
``module.m.aws_...``. Other sources (registry, git, S3...) are not downloaded: they are listed as
not inspected, with their source and version.
"""

from spotkit.check.hcl.load import HclLoader, Module, NotInspected, display_path, root_directories
from spotkit.check.hcl.values import Expr, Template, Unknown, unknown

__all__ = ["HclLoader", "Module", "NotInspected", "display_path", "root_directories", "Expr", "Template", "Unknown", "unknown"]
