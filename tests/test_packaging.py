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


def test_built_wheel_ships_the_recipes_as_kerasnets_recipes(tmp_path):
    import subprocess
    import sys
    import zipfile

    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), REPO],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("kerasnets-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "kerasnets/recipes/began.py" in names and "kerasnets/recipes/resnet.py" in names
    assert not any(n.startswith("recipes/") for n in names), "recipes must not ship as a top-level package"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "kerasnets = kerasnets.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
