"""The user's guide (README.md) and the documentation site (mkdocs.yml, docs/): README stays a short guide,
its own-stack example synthesizes, and the site's references are generated from the code (every CLI
command, every rule) and build with warnings as errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_cli_hints import own_stack_example
from spotkit.check import RULES

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
HOOK = ROOT / "docs" / "hooks" / "rules.py"


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the lines outside fenced code blocks and tables."""
    out, code = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            code = not code
            continue
        if not code and not line.lstrip().startswith("|"):
            out.append((number, line))
    return out


def load_hook():
    import importlib.util

    spec = importlib.util.spec_from_file_location("spotkit_docs_rules_hook", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nav_pages(nav) -> list[str]:
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages.extend(nav_pages(value) if isinstance(value, list) else [value])
    return pages


def test_readme_is_a_short_guide():
    # GIVEN README.md WHEN its size and prose lines are measured
    text = README.read_text()
    long_lines = [(n, len(line)) for n, line in prose_lines(text) if len(line) > 120]
    # THEN it stays within the limits, and reads as a guide rather than a lab notebook
    assert len(text.splitlines()) <= 300
    assert long_lines == []
    for phrase in ("measured here", "quiet machine", "load average"):
        assert phrase not in text.lower(), phrase
    for heading in ("## Prerequisites", "## Install", "## Fresh machine: two commands", "## Your own stack",
                    "## The CLI at a glance", "## Exit codes", "## Read more"):
        assert heading in text, heading
    assert "make demo" in text and "make test" in text and "](docs/drill.png)" in text


def test_readme_own_stack_example_synthesizes_what_it_says(tmp_path):
    # GIVEN README's "Your own stack" app in a folder of its own
    (tmp_path / "main.py").write_text(own_stack_example())
    # WHEN it is run as the README says (python3 main.py)
    done = subprocess.run([sys.executable, "main.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"})
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads((tmp_path / "cdktf.out" / "stacks" / "my-training" / "cdk.tf.json").read_text())
    resources = doc["resource"]
    # THEN there is a spot group on the three types, a data volume's snapshot policy, and the routed warnings
    (group,) = resources["aws_autoscaling_group"].values()
    overrides = group["mixed_instances_policy"]["launch_template"]["override"]
    assert [o["instance_type"] for o in overrides] == ["g5.xlarge", "g6.xlarge", "g6e.xlarge"]
    assert group["capacity_rebalance"] is True
    assert len(resources["aws_dlm_lifecycle_policy"]) == 1
    patterns = [json.loads(rule["event_pattern"]) for rule in resources["aws_cloudwatch_event_rule"].values()]
    assert {"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]} in [
        {k: p[k] for k in ("source", "detail-type")} for p in patterns]
    assert "aws_lambda_function" in resources and "aws_sqs_queue" in resources


def test_rule_reference_has_one_row_per_registered_rule():
    # GIVEN the rule registry WHEN the docs hook renders the rule reference
    table = load_hook().rule_table()
    rows = {line.split("|")[1].strip(" `"): line for line in table.splitlines()[2:]}
    # THEN every rule is there once, with its severity and fix, and the suppression rule last
    assert list(rows) == [r.id for r in RULES] + ["SPOT000"]
    for rule in RULES:
        assert f"| {rule.severity} |" in rows[rule.id]
        assert rule.fix.replace("|", "\\|") in rows[rule.id]
    assert "<!-- spotkit:rules -->" in (ROOT / "docs" / "rules.md").read_text()


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = nav_pages(config["nav"])
    assert len(pages) == len(set(pages))
    assert set(pages) == {p.name for p in (ROOT / "docs").glob("*.md")}


@pytest.mark.slow
def test_site_builds_strict_with_every_command_and_rule(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocs_click")
    # WHEN the site is built as `make docs` builds it (warnings are errors)
    # (the mkdocs script, not `python -m`: the repository's folders must not be importable by their own names)
    mkdocs = Path(sys.executable).parent / "mkdocs"
    done = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    # THEN the generated CLI reference documents every command (loaded lazily by the group) with its options
    from spotkit.cli.main import COMMANDS

    cli_page = (tmp_path / "site" / "cli" / "index.html").read_text()
    cli_page = cli_page.split('id="commands-and-options-generated"', 1)[1]  # the generated part only
    for command in COMMANDS:
        assert re.search(rf"spotkit {re.escape(command)}\b", cli_page), command
    for sub in ("local start", "local stop", "recover volumes", "recover restore-spot", "k8s render", "k8s check"):
        assert f"spotkit {sub}" in cli_page, sub
    for option in ("--on-notice", "--lock-wait", "--fail-on", "--detailed-exitcode", "--allow-data-loss"):
        assert option in cli_page, option
    # AND no list was swallowed into a paragraph (Python-Markdown needs a blank line before a list, and four
    # spaces to nest one, where GitHub needs neither)
    for page in (tmp_path / "site").glob("*/index.html"):
        for paragraph in re.findall(r"<p>(.*?)</p>", page.read_text(), flags=re.S):
            assert not re.search(r"\n\s*(- |\d+\. )", paragraph), (page.parent.name, paragraph[:200])
    # AND the rule reference lists every rule of the registry
    rules_page = (tmp_path / "site" / "rules" / "index.html").read_text()
    assert all(rule.id in rules_page for rule in RULES)


def documented_exit_codes() -> dict[int, str]:
    """README's exit-code table: code -> meaning."""
    text = README.read_text().split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^\| (\d+) \| (.*) \|$", text, flags=re.M)}


def exit_code_of(argv: list[str]) -> int:
    from spotkit.cli.main import main

    with pytest.raises(SystemExit) as ended:
        main(argv)
    return ended.value.code


def test_readme_exit_codes_are_the_ones_the_cli_uses(capsys):
    import click

    from spotkit.cli.main import cli

    documented = documented_exit_codes()
    # GIVEN a usage error, a user error and a bug WHEN each ends the CLI
    usage = exit_code_of(["stacks", "--no-such-option"])
    user = exit_code_of(["synth", "no-such-stack"])
    cli.add_command(click.Command("docs-test-bug", callback=lambda: 1 / 0))
    try:
        bug = exit_code_of(["docs-test-bug"])
    finally:
        cli.commands.pop("docs-test-bug")
    capsys.readouterr()
    # THEN README's table says what each code means
    assert "usage error" in documented[usage]
    assert "problem you can fix" in documented[user]
    assert "bug" in documented[bug]
    assert documented[0] == "done"
