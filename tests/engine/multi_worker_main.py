"""One worker of the 2-worker test: train the toy recipe, dump the final weights."""

import sys

import numpy as np

from kerasnets import distribute
from kerasnets.training import engine
from toy_recipe import ToyConfig, ToyRecipe


def main(run_dir, out_path):
    strategy = distribute.make_strategy("multi_worker")  # before any other TF op
    config = ToyConfig(steps=8, batch_size=16, checkpoint_every=4, strategy="multi_worker")
    result = engine.train(ToyRecipe(config), run_dir, strategy=strategy)
    arrays = {f"w{i}": v.numpy() for i, v in enumerate(result.model.net.trainable_variables)}
    arrays["state"] = np.array(result.model.state.numpy())
    arrays["replicas"] = np.array(strategy.num_replicas_in_sync)
    np.savez(out_path, **arrays)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
