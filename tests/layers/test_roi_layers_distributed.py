"""RoIPool / RoIAlign inside a two-replica MirroredStrategy step: same gradient as on one device."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from _roi_reference import random_boxes

from kerasnets.layers import RoIAlign, RoIPool

RNG = np.random.default_rng(21)
IMAGES = RNG.standard_normal((4, 12, 10, 2)).astype("float32")
BOXES = np.stack([random_boxes(RNG, 5, 12, 10, 0.5) for _ in range(4)])  # [B, N, 4], image coordinates
UPSTREAM = RNG.standard_normal((4, 5, 2, 3, 4)).astype("float32")


def _network(layer):
    # conv -> RoI layer: the gradient reaches a weight through the RoI op's backward pass.
    images = keras.Input((12, 10, 2))
    boxes = keras.Input((5, 4))
    features = keras.layers.Conv2D(4, 3, padding="same", strides=2, name="conv")(images)
    return keras.Model([images, boxes], layer(features, boxes))


@pytest.mark.distributed
@pytest.mark.parametrize("make_layer", [lambda: RoIPool((2, 3), 0.5), lambda: RoIAlign((2, 3), 0.5, sampling_ratio=2)],
                         ids=["RoIPool", "RoIAlign"])
def test_two_replica_gradient_equals_one_device(make_layer, two_cpu_strategy):
    keras.utils.set_random_seed(0)
    single = _network(make_layer())
    with two_cpu_strategy.scope():
        mirrored = _network(make_layer())
    mirrored.set_weights(single.get_weights())

    def loss_fn(model, images, boxes, upstream):
        out = model([images, boxes], training=True)  # RoIPool: the XLA arg-max pass
        return tf.reduce_sum(out * upstream) / 4.0  # global mean over the 4 images

    with tf.GradientTape() as tape:
        loss = loss_fn(single, IMAGES, BOXES, UPSTREAM)
    expected = tape.gradient(loss, single.trainable_variables)

    data = tf.data.Dataset.from_tensor_slices((IMAGES, BOXES, UPSTREAM)).batch(4)
    batch = next(iter(two_cpu_strategy.experimental_distribute_dataset(data)))

    @tf.function
    def step(images, boxes, upstream):
        def replica(images, boxes, upstream):
            with tf.GradientTape() as tape:
                loss = loss_fn(mirrored, images, boxes, upstream)
            return tape.gradient(loss, mirrored.trainable_variables)

        grads = two_cpu_strategy.run(replica, args=(images, boxes, upstream))
        return [two_cpu_strategy.reduce("SUM", g, axis=None) for g in grads]

    got = step(*batch)
    assert len(got) == len(expected) == 2
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-5, atol=1e-5)
    assert np.abs(expected[0].numpy()).max() > 0
