"""RoIPool against an independent NumPy transcription of the Caffe / torchvision kernel."""

import numpy as np
import pytest
import tensorflow as tf
from _roi_reference import random_boxes, roi_pool_ref, torchvision_reference

from kerasnets.layers import RoIPool
from kerasnets.ops.roi_pool import roi_pool, round_half_away_from_zero
from kerasnets.testing import run_layer_test

RNG = np.random.default_rng(5)
FEATURES = RNG.standard_normal((2, 9, 11, 3)).astype("float32")


@pytest.mark.parametrize("spatial_scale", [0.25, 0.5, 1.0])
@pytest.mark.parametrize("output_size", [(3, 4), (2, 2)])
@pytest.mark.parametrize("half_integers", [False, True])
def test_matches_numpy_reference(spatial_scale, output_size, half_integers):
    boxes = random_boxes(RNG, 36, 9, 11, spatial_scale, half_integers=half_integers)
    indices = RNG.integers(0, 2, len(boxes)).astype("int32")
    expected, _ = roi_pool_ref(FEATURES, boxes, indices, output_size, spatial_scale)
    got = roi_pool(FEATURES, boxes, indices, output_size, spatial_scale).numpy()
    assert got.shape == (36, *output_size, 3)
    np.testing.assert_array_equal(got, expected)


def test_matches_reference_inside_tf_function_with_many_bin_sizes():
    # Graph optimization rewrites x / 7 as x * (1/7), 1 ulp off for some integer sizes, which
    # moves a floor/ceil bin edge; boxes arrive as function inputs as in a real model.
    sizes = np.arange(1, 41, dtype="float32")
    boxes = np.stack([np.zeros_like(sizes), np.zeros_like(sizes), sizes - 1, sizes - 1], axis=1)
    fmap = RNG.standard_normal((1, 40, 40, 1)).astype("float32")
    indices = np.zeros(len(boxes), "int32")
    expected, _ = roi_pool_ref(fmap, boxes, indices, (7, 7), 1.0)
    fn = tf.function(lambda f, b, i: roi_pool(f, b, i, 7, 1.0))
    np.testing.assert_array_equal(fn(fmap, boxes, indices).numpy(), expected)


def test_round_half_away_from_zero():
    values = tf.constant([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.4999, -2.4999])
    np.testing.assert_array_equal(round_half_away_from_zero(values).numpy(), [-3, -2, -1, 1, 2, 3, 2, -2])
    assert tf.round(2.5).numpy() == 2.0  # why tf.round is not usable here


def test_half_pixel_box_starts_at_rounded_up_column():
    # x1 = 2.5 -> column 3 (C round), not 2 (banker's): a spike in column 2 must be ignored.
    fmap = np.zeros((1, 1, 6, 1), "float32")
    fmap[0, 0, 2, 0] = 10.0
    fmap[0, 0, 4, 0] = 1.0
    out = roi_pool(fmap, [[2.5, 0.0, 4.0, 0.0]], [0], (1, 1), 1.0).numpy()
    assert out[0, 0, 0, 0] == 1.0


def test_hand_computed_bins():
    # 1 x 4 x 4 map with value 10h + w; box (0,0)-(3,3) at scale 1: roi 4x4, 2x2 bins of 2x2.
    fmap = (10 * np.arange(4)[:, None] + np.arange(4)[None, :]).astype("float32").reshape(1, 4, 4, 1)
    out = roi_pool(fmap, [[0.0, 0.0, 3.0, 3.0]], [0], 2, 1.0).numpy()[0, :, :, 0]
    np.testing.assert_array_equal(out, [[11, 13], [31, 33]])
    # roi 3 wide, 2 bins: bin_w = 1.5 -> [0, 2) and [1, 3) overlap on column 1.
    out = roi_pool(fmap, [[0.0, 0.0, 2.0, 0.0]], [0], (1, 2), 1.0).numpy()[0, 0, :, 0]
    np.testing.assert_array_equal(out, [1, 2])
    # Entirely outside -> empty bins -> 0.
    out = roi_pool(fmap, [[10.0, 10.0, 20.0, 20.0]], [0], 2, 1.0).numpy()
    np.testing.assert_array_equal(out, np.zeros((1, 2, 2, 1)))


def test_gradient_goes_to_the_argmax():
    boxes = random_boxes(RNG, 24, 9, 11, 0.5)
    indices = RNG.integers(0, 2, len(boxes)).astype("int32")
    upstream = RNG.standard_normal((24, 3, 2, 3)).astype("float32")
    _, argmax = roi_pool_ref(FEATURES, boxes, indices, (3, 2), 0.5)
    expected = np.zeros((2 * 9 * 11, 3))
    for (r, p, q, c), where in np.ndenumerate(argmax):
        if where >= 0:
            expected[where, c] += upstream[r, p, q, c]
    features = tf.constant(FEATURES)
    for fn in (roi_pool, tf.function(roi_pool, reduce_retracing=True)):
        with tf.GradientTape() as tape:
            tape.watch(features)
            out = fn(features, boxes, indices, (3, 2), 0.5)
            loss = tf.reduce_sum(out * upstream)
        grad = tape.gradient(loss, features).numpy()
        np.testing.assert_allclose(grad.reshape(-1, 3), expected, atol=1e-5)
    assert np.count_nonzero(expected) > 20


def test_finite_differences():
    fmap = tf.constant(RNG.standard_normal((1, 5, 6, 2)))
    boxes = tf.constant([[0.0, 0.0, 4.0, 3.0], [1.2, 0.7, 5.4, 4.6]])

    def loss(f):
        return tf.reduce_sum(tf.cast(roi_pool(tf.cast(f, tf.float32), boxes, [0, 0], 2, 1.0), tf.float64) ** 2)

    with tf.GradientTape() as tape:
        tape.watch(fmap)
        value = loss(fmap)
    grad = tape.gradient(value, fmap).numpy()
    for index in [(0, 0, 0, 0), (0, 1, 1, 1), (0, 3, 2, 0), (0, 4, 5, 1)] + [tuple(i) for i in np.argwhere(grad)[:4]]:
        step = np.zeros(fmap.shape)
        step[index] = 1e-2  # max is piecewise linear: exact unless the step changes the arg-max
        numeric = float(loss(fmap + step) - loss(fmap - step)) / 2e-2
        assert grad[index] == pytest.approx(numeric, abs=1e-3)


def test_layer_contract_flat_and_batched():
    boxes = np.array([[2.0, 3.0, 30.0, 20.0], [-4.0, 1.0, 12.0, 40.0]], "float32")
    out = run_layer_test(RoIPool, {"output_size": (2, 3), "spatial_scale": 0.25},
                         [FEATURES, boxes, np.array([1, 0], "int32")], expected_output_shape=(2, 2, 3, 3),
                         expected_num_trainable_weights=0)
    np.testing.assert_array_equal(out, roi_pool_ref(FEATURES, boxes, [1, 0], (2, 3), 0.25)[0])
    batched = random_boxes(RNG, 6, 9, 11, 0.25).reshape(2, 3, 4)
    out = run_layer_test(RoIPool, {"output_size": 2, "spatial_scale": 0.25}, [FEATURES, batched],
                         expected_output_shape=(2, 3, 2, 2, 3))
    expected, _ = roi_pool_ref(FEATURES, batched.reshape(6, 4), [0, 0, 0, 1, 1, 1], (2, 2), 0.25)
    np.testing.assert_array_equal(out.reshape(6, 2, 2, 3), expected)


@pytest.mark.parametrize("training", [False, True])
def test_compiles_inside_an_xla_function_with_unknown_shapes(training):
    # What Keras does when it auto-jits a model: the whole step, shapes unknown at trace time
    # (window sizes then default to 3 per axis and the table size is decided at run time).
    assert RoIPool().supports_jit is True and RoIPool(jit_compile=False).supports_jit is False
    layer = RoIPool((2, 3), 0.5)
    spec = [tf.TensorSpec([None, None, None, 3]), tf.TensorSpec([None, 4]), tf.TensorSpec([None], tf.int32)]

    @tf.function(jit_compile=True, input_signature=spec)
    def step(f, boxes, indices):
        with tf.GradientTape() as tape:
            tape.watch(f)
            out = layer([f, boxes, indices], training=training)
        return out, tape.gradient(out, f, output_gradients=upstream)

    boxes = random_boxes(RNG, 20, 9, 11, 0.5)
    indices = RNG.integers(0, 2, len(boxes)).astype("int32")
    upstream = RNG.standard_normal((20, 2, 3, 3)).astype("float32")
    out, grad = step(FEATURES, boxes, indices)
    np.testing.assert_array_equal(out.numpy(), roi_pool_ref(FEATURES, boxes, indices, (2, 3), 0.5)[0])
    expected = _argmax_gradient(FEATURES, boxes, indices, (2, 3), 0.5, upstream)
    np.testing.assert_allclose(grad.numpy().reshape(-1, 3), expected, atol=1e-5)


@pytest.mark.parametrize("jit_compile", ["auto", True, False])
@pytest.mark.parametrize("training", [False, True])
def test_bins_larger_than_one_band_of_windows(jit_compile, training):
    # A 1 x 1 / 2 x 1 pooling of boxes far larger than a 40 x 37 map: bins up to 40 pixels, more
    # than the 30 one band of the largest windows (k = 15) covers, so the band loop runs twice
    # per axis; ties everywhere (3 values) so the arg-max rule is checked through the bands.
    rng = np.random.default_rng(2)
    features = rng.integers(0, 3, (1, 40, 37, 2)).astype("float32")
    boxes = np.array([[-50, -60, 100, 90], [0, 0, 36, 39], [3, 5, 36, 38], [-5, 20, 20, 200]], "float32")
    indices = np.zeros(4, "int32")
    upstream = rng.standard_normal((4, 2, 1, 2)).astype("float32")
    f = tf.constant(features)
    with tf.GradientTape() as tape:
        tape.watch(f)
        out = roi_pool(f, boxes, indices, (2, 1), 1.0, training=training, jit_compile=jit_compile)
    grad = tape.gradient(out, f, output_gradients=upstream)
    np.testing.assert_array_equal(out.numpy(), roi_pool_ref(features, boxes, indices, (2, 1), 1.0)[0])
    expected = _argmax_gradient(features, boxes, indices, (2, 1), 1.0, upstream)
    np.testing.assert_allclose(grad.numpy().reshape(-1, 2), expected, atol=1e-6)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="box_indices"):
        roi_pool(FEATURES, np.zeros((3, 4), "float32"), None, 2)
    with pytest.raises(ValueError, match="output_size"):
        RoIPool(output_size=(2, 0))
    with pytest.raises(ValueError, match="spatial_scale"):
        RoIPool(spatial_scale=0.0)
    with pytest.raises(ValueError, match="jit_compile"):
        RoIPool(jit_compile="xla")
    with pytest.raises(ValueError, match="jit_compile"):
        roi_pool(FEATURES, np.zeros((1, 4), "float32"), [0], 2, jit_compile=1)


@pytest.mark.parametrize("spatial_scale", [0.25, 1.0])
def test_matches_torchvision_if_installed(spatial_scale):
    boxes = random_boxes(RNG, 40, 9, 11, spatial_scale, half_integers=True)
    indices = RNG.integers(0, 2, len(boxes)).astype("int32")
    expected = torchvision_reference("roi_pool", FEATURES, boxes, indices, (3, 4), spatial_scale)
    if expected is None:
        pytest.skip("torch/torchvision not installed (optional `bench` extra)")
    np.testing.assert_array_equal(roi_pool(FEATURES, boxes, indices, (3, 4), spatial_scale).numpy(), expected)


def _argmax_gradient(features, boxes, indices, output_size, spatial_scale, upstream):
    _, argmax = roi_pool_ref(features, boxes, indices, output_size, spatial_scale)
    channels = features.shape[-1]
    expected = np.zeros((int(np.prod(features.shape[:3])), channels))
    for (r, p, q, c), where in np.ndenumerate(argmax):
        if where >= 0:
            expected[where, c] += upstream[r, p, q, c]
    return expected


@pytest.mark.parametrize("jit_compile", ["auto", False])
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("table_elements", [None, 1])
def test_ties_go_to_the_first_maximum_in_row_major_order(table_elements, training, jit_compile, monkeypatch):
    # Few distinct values (as after ReLU / quantization): most bins hold several maxima, and the
    # first one in row-major order can sit in any of the four look-up windows. table_elements=1
    # leaves no room for a window table: one-pixel windows on the map itself, bins in bands of
    # 2 x 2. training=True takes values and arg-max from the int64 keys in the forward pass
    # (XLA-compiled with jit_compile="auto"); False, the float max.
    from kerasnets.ops import roi_pool as roi_ops

    if table_elements is not None:
        monkeypatch.setattr(roi_ops, "MAX_TABLE_ELEMENTS", table_elements)
    rng = np.random.default_rng(11)
    features = rng.integers(0, 3, (2, 13, 17, 4)).astype("float32")
    boxes = random_boxes(rng, 40, 13, 17, 1.0)
    indices = rng.integers(0, 2, len(boxes)).astype("int32")
    upstream = rng.standard_normal((40, 2, 3, 4)).astype("float32")
    expected_out, _ = roi_pool_ref(features, boxes, indices, (2, 3), 1.0)
    expected = _argmax_gradient(features, boxes, indices, (2, 3), 1.0, upstream)
    f = tf.constant(features)
    with tf.GradientTape() as tape:
        tape.watch(f)
        out = roi_ops.roi_pool(f, boxes, indices, (2, 3), 1.0, training=training, jit_compile=jit_compile)
        loss = tf.reduce_sum(out * upstream)
    np.testing.assert_array_equal(out.numpy(), expected_out)
    np.testing.assert_allclose(tape.gradient(loss, f).numpy().reshape(-1, 4), expected, atol=1e-5)


def test_training_mode_gives_the_same_values_on_random_features():
    # Negative values, -0.0 and +0.0 all round-trip through the int64 keys.
    features = FEATURES.copy()
    features[0, :3, :3, 0] = -0.0
    boxes = random_boxes(RNG, 30, 9, 11, 0.5)
    indices = RNG.integers(0, 2, len(boxes)).astype("int32")
    expected, _ = roi_pool_ref(features, boxes, indices, (3, 2), 0.5)
    out = roi_pool(features, boxes, indices, (3, 2), 0.5, training=True).numpy()
    np.testing.assert_array_equal(out, expected)
    layer_out = RoIPool((3, 2), 0.5)([features, boxes, indices], training=True)
    np.testing.assert_array_equal(np.asarray(layer_out), expected)
