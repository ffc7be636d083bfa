"""show_attend_tell recipe: config checks, a tiny run whose loss falls, BLEU evaluation, the attention PNG, and
the raw-image SavedModel (beam search inside) reloaded in a fresh process without kerasnets."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from kerasnets import registry
from kerasnets.config import apply_overrides
from kerasnets.errors import ConfigError
from kerasnets.recipes.show_attend_tell import ShowAttendTellConfig, ShowAttendTellRecipe
from kerasnets.training import engine


def tiny(**overrides):
    base = dict(steps=40, batch_size=16, num_train=64, num_val=8, max_objects=1, max_length=8, image_size=16,
                encoder_filters=(8, 16), embed_dim=16, units=32, attention_units=16, beam_width=2,
                eval_batch_size=8, attention_examples=2, log_every=10, learning_rate=3e-3, checkpoint_every=1000, strategy="default")
    base.update(overrides)
    return ShowAttendTellConfig(**base)


def test_registered_and_config_errors():
    assert registry.get("show_attend_tell") is ShowAttendTellRecipe
    with pytest.raises(ConfigError, match="divisible"):
        apply_overrides(ShowAttendTellConfig(), {"image_size": "30"})
    with pytest.raises(ConfigError, match="data_dir"):
        apply_overrides(ShowAttendTellConfig(), {"data": "coco"})
    with pytest.raises(ConfigError, match="encoder_weights"):
        apply_overrides(ShowAttendTellConfig(), {"encoder_weights": "/nope.h5"})
    with pytest.raises(ConfigError):
        apply_overrides(ShowAttendTellConfig(), {"beam_width": "0"})


def test_caption_pairs_and_batches():
    recipe = ShowAttendTellRecipe(tiny())
    index, tokens = recipe.caption_pairs("train")
    assert len(index) == 64 * 5 and tokens.shape == (320, 10)
    np.testing.assert_array_equal(index[:5], 0)
    images, toks = next(iter(recipe.build_dataset("train")))
    assert images.shape == (16, 16, 16, 3) and images.dtype == tf.uint8 and toks.shape == (16, 10)
    again = next(iter(recipe.build_dataset("train")))
    np.testing.assert_array_equal(again[1].numpy(), toks.numpy())  # deterministic by seed
    resumed = next(iter(recipe.build_dataset("train", start_step=1)))
    second = list(recipe.build_dataset("train").take(2))[1]
    np.testing.assert_array_equal(resumed[1].numpy(), second[1].numpy())


@pytest.mark.slow
def test_tiny_run_loss_falls_evaluates_and_exports_raw_images(tmp_path):
    from kerasnets.export import export_saved_model

    recipe = ShowAttendTellRecipe(tiny())
    result = engine.train(recipe, str(tmp_path / "run"))
    nll = [row["token_nll"] for row in result.history]
    assert nll[-1] < 0.8 * nll[0], nll
    summary = result.summary
    for kind in ("greedy", "beam"):
        for n in range(1, 5):
            assert 0.0 <= summary[f"{kind}_bleu{n}"] <= 100.0
    assert summary["greedy_bleu1"] > 20.0  # names at least "a", colours and shapes
    assert os.path.getsize(summary["attention_plot"]) > 1000
    assert len(summary["examples"]) == 2

    path = export_saved_model(recipe, result.model, export_root=str(tmp_path / "sm"))
    image = np.random.default_rng(0).integers(0, 256, (1, 23, 41, 3), dtype=np.uint8)  # any size: resized inside
    val = recipe.splits()["val"][0][:2]
    np.save(tmp_path / "raw.npy", image)
    np.save(tmp_path / "val.npy", val)
    script = (
        "import sys, json, numpy as np, tensorflow as tf\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "out = {}\n"
        "for name in ('raw', 'val'):\n"
        "    r = m.signatures['serving_default'](images=tf.constant(np.load(sys.argv[2] + f'/{name}.npy')))\n"
        "    g = m.signatures['greedy'](images=tf.constant(np.load(sys.argv[2] + f'/{name}.npy')))\n"
        "    out[name] = {'captions': [c.decode() for c in r['captions'].numpy()], 'tokens': r['tokens'].numpy().tolist(),\n"
        "                 'attention': list(r['attention'].shape), 'greedy': [c.decode() for c in g['captions'].numpy()]}\n"
        "out['kerasnets'] = any(k.startswith('kerasnets') for k in sys.modules)\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([sys.executable, "-P", "-c", script, path, str(tmp_path)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": ""}, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    fresh = json.loads(proc.stdout.strip().splitlines()[-1])
    assert fresh["kerasnets"] is False
    assert isinstance(fresh["raw"]["captions"][0], str)
    assert fresh["raw"]["attention"] == [1, 9, 8, 8]  # T = max_length + 1, 8 x 8 annotation grid
    cap = result.model.captioner
    ids, _, _ = cap.beam_search(val, 8, 2)
    np.testing.assert_array_equal(fresh["val"]["tokens"], ids.numpy())
    assert fresh["val"]["captions"] == [recipe.vocabulary().decode(row) for row in ids.numpy()]
    greedy, _ = cap.greedy_decode(val, 8)
    assert fresh["val"]["greedy"] == [recipe.vocabulary().decode(row) for row in greedy.numpy()]


def test_mentioned_objects_reads_colour_shape_pairs():
    from kerasnets.data.captions import captions_for
    from kerasnets.recipes.show_attend_tell import mentioned_objects

    objects = [{"colour": "red", "shape": "circle", "row": 0, "col": 0},
               {"colour": "blue", "shape": "square", "row": 0, "col": 2},
               {"colour": "white", "shape": "triangle", "row": 2, "col": 1}]
    want = {("red", "circle"), ("blue", "square"), ("white", "triangle")}
    assert all(mentioned_objects(c.split()) == want for c in captions_for(objects))
    assert mentioned_objects("a red square above a blue".split()) == {("red", "square")}


def test_coco_data_feeds_the_recipe(tmp_path):
    from test_show_attend_tell_data import _write_coco

    for split in ("train", "val"):
        _write_coco(tmp_path, split)
    recipe = ShowAttendTellRecipe(tiny(data="coco", data_dir=str(tmp_path), batch_size=2))
    assert "giraffe" in recipe.vocabulary().tokens
    index, tokens = recipe.caption_pairs("val")
    np.testing.assert_array_equal(index, [0, 0, 1])
    images, toks = next(iter(recipe.build_dataset("train")))
    assert images.shape == (2, 16, 16, 3) and toks.shape == (2, 10)
    val_images, val_tokens = next(iter(recipe.build_dataset("val")))
    assert val_images.shape == (3, 16, 16, 3)
    assert recipe.vocabulary().decode(val_tokens[2].numpy()) == "a giraffe standing"
