"""Generator and discriminator of Salimans et al. 2016's permutation-invariant MNIST model.

openai/improved-gan `train_mnist_feature_matching.py` (the paper's MNIST
semi-supervised model), sizes configurable so the same builders serve 8x8
digits on a CPU:

* generator: z ~ U(0, 1)^{100} -> Dense 500, softplus, BN -> Dense 500,
  softplus, BN -> Dense HxWxC, sigmoid. Here the BN can be virtual batch
  normalisation (section 3.4): `VirtualBatchNormalization(reference_size=R)`,
  with the first R rows of each training batch generated from a fixed
  reference z.
* discriminator: Gaussian input noise (sigma 0.3) -> Dense 1000 -> 500 -> 250
  -> 250 -> 250, each ReLU followed by Gaussian noise (sigma 0.5) -> optional
  minibatch discrimination -> Dense K (the K class logits; the fake class's
  logit is fixed at 0). The last hidden layer is the feature-matching layer.
  The reference applies weight normalisation to every dense layer; we use
  plain dense layers (documented difference).
"""

from __future__ import annotations

import keras

from kerasnets.layers.minibatch_discrimination import MinibatchDiscrimination
from kerasnets.layers.virtual_batch_normalization import VirtualBatchNormalization


def build_generator(
    noise_dim: int,
    image_shape: tuple[int, int, int],
    hidden: tuple[int, ...] = (500, 500),
    *,
    virtual_batch_norm: bool = True,
    reference_size: int = 0,
    name: str = "generator",
) -> keras.Model:
    """z -> image in [0, 1]. With `virtual_batch_norm`, training batches start with `reference_size` reference rows."""
    if virtual_batch_norm and reference_size < 1:
        raise ValueError("virtual_batch_norm needs reference_size >= 1")
    z = keras.Input((noise_dim,), name="z")
    x = z
    for i, units in enumerate(hidden):
        x = keras.layers.Dense(units, activation="softplus", name=f"dense_{i}")(x)
        if virtual_batch_norm:
            x = VirtualBatchNormalization(reference_size=reference_size, name=f"vbn_{i}")(x)
        else:
            x = keras.layers.BatchNormalization(name=f"bn_{i}")(x)
    size = image_shape[0] * image_shape[1] * image_shape[2]
    x = keras.layers.Dense(size, activation="sigmoid", name="pixels")(x)
    images = keras.layers.Reshape(image_shape, name="images")(x)
    return keras.Model(z, images, name=name)


def build_discriminator(
    image_shape: tuple[int, int, int],
    num_classes: int,
    hidden: tuple[int, ...] = (1000, 500, 250, 250, 250),
    *,
    input_noise: float = 0.3,
    hidden_noise: float = 0.5,
    minibatch_kernels: int = 0,
    minibatch_kernel_dim: int = 5,
    name: str = "discriminator",
) -> keras.Model:
    """image -> (features of the last hidden layer, K class logits)."""
    images = keras.Input(image_shape, name="images")
    x = keras.layers.Flatten()(images)
    x = keras.layers.GaussianNoise(input_noise, name="input_noise")(x)
    for i, units in enumerate(hidden):
        x = keras.layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
        if i < len(hidden) - 1:
            x = keras.layers.GaussianNoise(hidden_noise, name=f"noise_{i}")(x)
    features = x
    if minibatch_kernels:
        x = MinibatchDiscrimination(minibatch_kernels, minibatch_kernel_dim, name="minibatch_discrimination")(x)
    logits = keras.layers.Dense(num_classes, name="class_logits")(x)
    return keras.Model(images, [features, logits], name=name)
