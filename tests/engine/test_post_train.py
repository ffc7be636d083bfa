"""Engine: `Recipe.post_train` runs after the last step and before the final checkpoint."""

import os

import numpy as np
import tensorflow as tf

from kerasnets.training import engine
from toy_recipe import ToyConfig, ToyRecipe


class PostTrainRecipe(ToyRecipe):
    """Overwrites the output bias after training (as R-CNN fits its SVMs) and counts its calls."""

    calls = 0

    def post_train(self, model):
        PostTrainRecipe.calls += 1
        bias = model.net.layers[-1].bias
        bias.assign(tf.fill(tf.shape(bias), 7.0))
        return {"post_train_calls": PostTrainRecipe.calls}


def test_post_train_lands_in_final_checkpoint_and_summary(tmp_path):
    run = str(tmp_path / "run")
    PostTrainRecipe.calls = 0
    result = engine.train(PostTrainRecipe(ToyConfig(steps=3, checkpoint_every=100, log_every=1)), run)
    assert result.summary["post_train_calls"] == 1
    latest = tf.train.latest_checkpoint(os.path.join(run, "checkpoints"))
    assert latest.endswith("ckpt-3")
    reader = tf.train.load_checkpoint(latest)
    biases = [reader.get_tensor(k) for k, shape in reader.get_variable_to_shape_map().items()
              if k.startswith("all_variables/") and shape == [10]]
    assert len(biases) == 1 and np.all(biases[0] == 7.0)
    # Re-running the finished run trains no step, so post_train does not run again.
    again = engine.train(PostTrainRecipe(ToyConfig(steps=3, checkpoint_every=100, log_every=1)), run)
    assert PostTrainRecipe.calls == 1 and "post_train_calls" not in again.summary
