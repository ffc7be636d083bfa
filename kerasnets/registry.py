"""Recipe registry: recipe name -> module that defines it.

Built-in recipes live in the top-level `recipes/` folder, shipped as
`kerasnets.recipes`. Other packages add theirs through the entry-point group
`kerasnets.recipes`:

    [options.entry_points]
    kerasnets.recipes =
        my_gan = my_package.my_gan:MyGanRecipe

and a one-off recipe can be named by import path: `recipe=my_package.my_gan:MyGanRecipe`.

Looking a name up does not import TensorFlow; loading a recipe does.
"""

from __future__ import annotations

import difflib
import importlib
from importlib import metadata

from kerasnets.errors import UsageError

ENTRY_POINT_GROUP = "kerasnets.recipes"

# name -> "module:attribute". Keep sorted; one line per paper.
BUILTIN_RECIPES: dict[str, str] = {
    "batchnorm": "kerasnets.recipes.batchnorm:BatchNormRecipe",
    "began": "kerasnets.recipes.began:BeganRecipe",
    "bit_flip_attack": "kerasnets.recipes.bit_flip_attack:BitFlipAttackRecipe",
    "dgex": "kerasnets.recipes.dgex:DGEXRecipe",
    "edge_popup": "kerasnets.recipes.edge_popup:EdgePopupRecipe",
    "fast_rcnn": "kerasnets.recipes.fast_rcnn:FastRCNNRecipe",
    "faster_rcnn": "kerasnets.recipes.faster_rcnn:FasterRCNNRecipe",
    "fasttext": "kerasnets.recipes.fasttext:FastTextRecipe",
    "gat": "kerasnets.recipes.gat:GATRecipe",
    "guesswhat": "kerasnets.recipes.guesswhat:GuessWhatRecipe",
    "hrnet": "kerasnets.recipes.hrnet:HRNetRecipe",
    "improved_gan": "kerasnets.recipes.improved_gan:ImprovedGanRecipe",
    "lbfgs_attack": "kerasnets.recipes.lbfgs_attack:LBFGSAttackRecipe",
    "mask_rcnn": "kerasnets.recipes.mask_rcnn:MaskRCNNRecipe",
    "rcnn": "kerasnets.recipes.rcnn:RCNNRecipe",
    "resnet": "kerasnets.recipes.resnet:ResNetRecipe",
    "retarget2d": "kerasnets.recipes.retarget2d:Retarget2DRecipe",
    "show_attend_tell": "kerasnets.recipes.show_attend_tell:ShowAttendTellRecipe",
    "ssd": "kerasnets.recipes.ssd:SSDRecipe",
    "supermask": "kerasnets.recipes.supermask:SupermaskRecipe",
    "tcc": "kerasnets.recipes.tcc:TCCRecipe",
    "tompson": "kerasnets.recipes.tompson:TompsonRecipe",
    "videopose3d": "kerasnets.recipes.videopose3d:VideoPose3DRecipe",
}


def _entry_point_recipes() -> dict[str, str]:
    found = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.value
    return found


def available() -> dict[str, str]:
    """All recipe names with their import targets (built-ins win on a clash)."""
    return {**_entry_point_recipes(), **BUILTIN_RECIPES}


def _import_target(target: str):
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    if not attr:
        if not hasattr(module, "RECIPE"):
            raise UsageError(f"module '{module_name}' has no RECIPE; name the class as '{module_name}:ClassName'")
        return module.RECIPE
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UsageError(f"module '{module_name}' has no attribute '{attr}'") from None


def get(name: str):
    """The Recipe class registered as `name`, or the class at import path `module:Class`."""
    from kerasnets.training.recipe import Recipe  # TF import, only once a recipe is needed

    recipes = available()
    if name in recipes:
        target = recipes[name]
    elif ":" in name:
        target = name
    else:
        close = difflib.get_close_matches(name, list(recipes), n=1, cutoff=0.5)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UsageError(f"unknown recipe '{name}'.{hint} Valid recipes: {', '.join(sorted(recipes))}")
    try:
        cls = _import_target(target)
    except ModuleNotFoundError as exc:
        if ":" in name and name not in recipes and exc.name and target.startswith(exc.name):
            raise UsageError(f"cannot import recipe module '{exc.name}'") from None
        raise
    if isinstance(cls, Recipe):
        cls = type(cls)
    if not (isinstance(cls, type) and issubclass(cls, Recipe)):
        raise UsageError(f"'{target}' is not a kerasnets Recipe subclass")
    return cls
