"""The test tiers (tests/support/tiers.py, applied by tests/conftest.py): each collected test is marked unit,
synth, emulator or e2e from what it uses, so `make test-unit` (``pytest -m "unit and not slow"``) runs no AWS
emulator, no synthesis and no Terraform."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.support.tiers import tier


OTHER_TIERS = ("synth", "emulator", "e2e")


def fake_item(fixtures=(), markers=(), function=None, fixture_funcs=None, module=None):
    """What ``tier`` reads of a collected test: its markers, fixture names and definitions, its function."""
    defs = {name: [SimpleNamespace(func=func)] for name, func in (fixture_funcs or {}).items()}
    return SimpleNamespace(get_closest_marker=lambda name: name if name in markers else None,
                           fixturenames=list(fixtures) + list(defs), _fixtureinfo=SimpleNamespace(name2fixturedefs=defs),
                           function=function, module=module)


def plain(tmp_path):
    return tmp_path


def starts_the_harness_moto():
    from tests.support.moto_server import start_moto_server

    return start_moto_server()


def starts_the_local_target(project):
    from spotkit.rehearsal.local import emulator

    return emulator.start(project, port=None)


def test_terraform_is_e2e_even_with_an_emulator():
    assert tier(fake_item(fixtures=["aws", "tmp_path"], markers=["terraform"], function=plain)) == "e2e"


@pytest.mark.parametrize("fixture", ["aws", "moto_server"])
def test_the_emulator_fixtures_make_an_emulator_test(fixture):
    assert tier(fake_item(fixtures=[fixture, "tmp_path"], function=plain)) == "emulator"


def test_a_module_fixture_that_starts_moto_makes_an_emulator_test():
    item = fake_item(fixtures=["tmp_path"], function=plain, fixture_funcs={"server": starts_the_harness_moto})
    assert tier(item) == "emulator"


def test_a_test_that_starts_the_local_target_itself_is_an_emulator_test():
    assert tier(fake_item(fixtures=["tmp_path"], function=starts_the_local_target)) == "emulator"


def runs_spotkit_synth(tmp_path):
    return ["spotkit", "synth", "training", "--out", str(tmp_path)]


def names_the_tier():
    return "synth" == "synth"


def test_a_module_that_imports_the_stacks_or_a_test_that_runs_spotkit_synth_is_synth():
    import tests.test_training_stack as synthesizing

    assert tier(fake_item(fixtures=["tmp_path"], function=plain, module=synthesizing)) == "synth"
    assert tier(fake_item(fixtures=["tmp_path"], function=runs_spotkit_synth)) == "synth"
    assert tier(fake_item(fixtures=["tmp_path"], function=plain, fixture_funcs={"built": runs_spotkit_synth})) == "synth"
    # a test that only names the tier is not one
    assert tier(fake_item(fixtures=["tmp_path"], function=names_the_tier)) == "unit"
    # an emulator test that also synthesizes is an emulator test
    assert tier(fake_item(fixtures=["aws"], function=plain, module=synthesizing)) == "emulator"


def test_anything_else_is_unit():
    import tests.test_drill_analysis as pure

    assert tier(fake_item(fixtures=["tmp_path", "monkeypatch"], function=plain, fixture_funcs={"settings": plain},
                          module=pure)) == "unit"


def test_collected_tests_carry_their_tier(request):
    # this test uses no emulator, no synthesis and no Terraform: the collection hook marked it unit, and only unit
    assert request.node.get_closest_marker("unit") is not None
    assert not any(request.node.get_closest_marker(other) for other in OTHER_TIERS)
