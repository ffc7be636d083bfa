"""The wheel ships every package, and the recipes as `kerasnets.recipes`."""

import configparser
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _declared_packages():
    parser = configparser.ConfigParser()
    parser.read(os.path.join(REPO, "setup.cfg"))
    return {p.strip() for p in parser["options"]["packages"].split("\n") if p.strip()}


def test_every_package_folder_is_declared_in_setup_cfg():
    found = {"kerasnets.recipes"}
    for root, _dirs, files in os.walk(os.path.join(REPO, "kerasnets")):
        if "__init__.py" in files and "__pycache__" not in root:
            found.add(os.path.relpath(root, REPO).replace(os.sep, "."))
    assert found == _declared_packages(), "update [options] packages in setup.cfg"


def test_recipes_import_under_the_package_name():
    import kerasnets.recipes.began  # noqa: F401  (mapped from the top-level recipes/ folder)
