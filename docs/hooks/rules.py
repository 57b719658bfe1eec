"""MkDocs hook: the rule reference (docs/rules.md) is generated from the rule registry at build time.

The page holds the marker ``<!-- spotkit:rules -->``; this hook replaces it with one table row per rule of
``spotkit.check.RULES`` (and the suppression rule, SPOT000), read through the registry's public names only:
``id``, ``severity``, ``title`` (or ``description`` when a rule has one), ``fix``, ``help_uri``. The hook
also loads every CLI command before mkdocs-click documents them (the group loads its commands lazily).
"""

from __future__ import annotations

MARKER = "<!-- spotkit:rules -->"


def _cell(text) -> str:
    return str(text or "").replace("|", "\\|").replace("\n", " ").strip()


def rule_table() -> str:
    """The Markdown table of every registered rule, in registry order, SPOT000 last."""
    import spotkit.check as check

    rules = list(check.RULES)
    invalid = getattr(check, "INVALID_SUPPRESSION", None)
    if invalid is None:
        from spotkit.check.rules import INVALID_SUPPRESSION as invalid
    if invalid.id not in {r.id for r in rules}:
        rules.append(invalid)
    lines = ["| id | severity | category | what it finds | fix | docs |", "|---|---|---|---|---|---|"]
    for rule in rules:
        what = getattr(rule, "description", None) or rule.title
        uri = getattr(rule, "help_uri", None)
        docs = f"[AWS/Karpenter docs]({uri})" if uri else "–"
        lines.append(f"| `{rule.id}` | {rule.severity} | {_cell(getattr(rule, 'category', ''))} | {_cell(what)} "
                     f"| {_cell(rule.fix)} | {docs} |")
    return "\n".join(lines)


def load_every_command() -> list[str]:
    """Import every command module of the lazy CLI group, so the generated reference lists them all."""
    import click

    from spotkit.cli.main import cli

    return list(cli.list_commands(click.Context(cli)))


def on_config(config, **kwargs):
    load_every_command()
    return config


def on_page_markdown(markdown: str, page, **kwargs) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, rule_table())
    return markdown
