"""What the three adversarial recipes share: data, classifier training, checkpoints, export.

`lbfgs_attack`, `bit_flip_attack` and `gat` all train small image
classifiers (`kerasnets.models.small_classifiers`) on in-memory data
(`kerasnets.data.image_classification`) and then evaluate an attack on them.
This base holds the common config keys and Recipe hooks so the recipe modules
only carry their paper's part.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

import numpy as np
import tensorflow as tf

from kerasnets.config import RecipeConfig, param
from kerasnets.data import image_classification
from kerasnets.data.streams import array_dataset, eval_dataset
from kerasnets.errors import ConfigError
from kerasnets.tasks.image_classification import classifier_endpoints, single_image_batches
from kerasnets.training.recipe import Recipe

NUM_CLASSES = 10


@dataclasses.dataclass
class AttackRecipeConfig(RecipeConfig):
    """Keys shared by the adversarial recipes (data and classifier training)."""

    steps: int = param(1500, help="training steps of the classifier(s)", min=1)
    batch_size: int = param(64, help="global batch size", min=1)
    learning_rate: float = param(1e-3, help="Adam learning rate of the classifier(s)", min=0.0)
    weight_decay: float = param(0.0, help="coupled L2 penalty on kernels (Szegedy's lambda)", min=0.0)
    data: Literal["embedded", "mnist", "cifar10"] = param(
        "embedded", help="embedded: scikit-learn digits 8x8 (no download); mnist / cifar10: tensorflow-datasets"
    )
    max_train: Optional[int] = param(None, help="keep at most this many training images (None: all)", min=1)
    max_test: Optional[int] = param(None, help="keep at most this many test images (None: all)", min=1)
    num_attack: int = param(100, help="correctly classified test images attacked", min=1)
    num_plot: int = param(8, help="examples shown in the PNG rows", min=1, max=32)
    log_every: int = param(50, help="write TensorBoard scalars every N steps", min=1)
    checkpoint_every: int = param(500, help="save a checkpoint every N steps (and at the end)", min=1)

    def validate(self) -> None:
        super().validate()
        if self.max_train is not None and self.max_train < self.batch_size:
            raise ConfigError(
                f"bad value for 'max_train': {self.max_train} is smaller than batch_size {self.batch_size}"
            )


class AttackRecipeBase(Recipe):
    """Data loading, train/eval datasets, checkpoint items and the classifier export."""

    config_class = AttackRecipeConfig

    def __init__(self, config=None):
        super().__init__(config)
        self.config.validate()
        self._data = None

    # ------------------------------------------------------------------ data
    def data(self):
        """`(x_train, y_train), (x_test, y_test)`, loaded once per recipe object."""
        if self._data is None:
            c = self.config
            self._data = image_classification.load_image_classification(
                c.data, data_dir=c.data_dir, download=c.download, seed=0, max_train=c.max_train, max_test=c.max_test
            )
        return self._data

    def image_shape(self) -> tuple[int, int, int]:
        return image_classification.image_shape(self.config.data)

    def build_dataset(self, split: str = "train", start_step: int = 0) -> tf.data.Dataset:
        (x_tr, y_tr), (x_te, y_te) = self.data()
        if split == "train":
            return array_dataset((x_tr, y_tr), self.config.batch_size, self.config.seed, start_step)
        if split == "test":
            return eval_dataset((x_te, y_te), self.config.batch_size)
        raise ValueError(f"unknown split '{split}'; expected 'train' or 'test'")

    def attack_set(self, classifier, num: Optional[int] = None):
        """The first `num` test images `classifier` gets right (Szegedy attacks correctly classified inputs)."""
        from kerasnets.models.small_classifiers import predict_labels

        (_, _), (x_te, y_te) = self.data()
        keep = predict_labels(classifier, x_te) == y_te
        num = self.config.num_attack if num is None else num
        return x_te[keep][:num], y_te[keep][:num]

    # ----------------------------------------------------------- checkpoints
    def optimizers(self, model) -> dict:
        """Named optimizers of the training model (saved in checkpoints)."""
        return {}

    def checkpoint_items(self, model):
        return {"model": model, **self.optimizers(model)}

    # ----------------------------------------------------------------- export
    def exported_classifier(self, model):
        """The Keras logits model behind `serving_default`."""
        raise NotImplementedError

    def export_endpoints(self, model):
        """`serving_default`: `images` float32 [N, H, W, C] in [0, 1] -> `probabilities`, `classes`."""
        return classifier_endpoints(self.exported_classifier(model), self.image_shape())

    def representative_dataset(self, num_samples: int = 64):
        (x_tr, _), _ = self.data()
        return single_image_batches(np.asarray(x_tr), num_samples)
