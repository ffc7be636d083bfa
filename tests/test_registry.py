"""Recipe registry: built-ins, third-party entry points, import paths."""

import os
import sys
import textwrap

import pytest

from kerasnets import registry
from kerasnets.errors import UsageError


def test_builtin_recipes_are_listed_and_load():
    names = registry.available()
    assert "began" in names and "resnet" in names
    for name in names:
        cls = registry.get(name)
        assert cls.name == name, f"{name} is registered but its class says {cls.name!r}"
        assert cls.paper and cls.summary, f"{name} needs a paper and a one-line summary"


def test_entry_point_recipe_from_another_package(tmp_path, monkeypatch):
    """A package that declares `kerasnets.recipes = mine = my_pkg.mine:MyRecipe` is found."""
    pkg = tmp_path / "my_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mine.py").write_text(
        textwrap.dedent(
            """
            from kerasnets.training.recipe import Recipe

            class MyRecipe(Recipe):
                name = "mine"
                paper = "Me 2026"
                summary = "a user's own recipe"
            """
        )
    )
    dist = tmp_path / "my_pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[kerasnets.recipes]\nmine = my_pkg.mine:MyRecipe\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert registry.available()["mine"] == "my_pkg.mine:MyRecipe"
    assert registry.get("mine").summary == "a user's own recipe"


def test_import_path_form_and_errors(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(__file__), "engine"))
    assert registry.get("toy_recipe:ToyRecipe").name == "toy"
    with pytest.raises(UsageError, match="has no attribute 'Nope'"):
        registry.get("toy_recipe:Nope")
    with pytest.raises(UsageError, match="cannot import recipe module 'no_such_module'"):
        registry.get("no_such_module:X")
    with pytest.raises(UsageError, match="not a kerasnets Recipe subclass"):
        registry.get("os:path")
    with pytest.raises(UsageError, match="Valid recipes: .*began"):
        registry.get("nothing_like_it")
    assert "toy_recipe" not in sys.modules or sys.modules["toy_recipe"].ToyRecipe.name == "toy"
