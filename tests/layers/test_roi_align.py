"""RoIAlign against an independent NumPy transcription of torchvision's kernel (and torchvision if present)."""

import numpy as np
import pytest
import tensorflow as tf
from _roi_reference import random_boxes, roi_align_ref, torchvision_reference

from kerasnets.layers import RoIAlign
from kerasnets.ops.roi_align import roi_align
from kerasnets.testing import run_layer_test

SCALE = 0.25
RNG = np.random.default_rng(3)
FEATURES = RNG.standard_normal((2, 9, 11, 3)).astype("float32")
BOXES = random_boxes(RNG, 48, 9, 11, SCALE)
INDICES = RNG.integers(0, 2, len(BOXES)).astype("int32")


def test_box_kinds_cover_edge_cases():
    # The random set must really hold tiny, huge, outside and inverted boxes.
    w, h = BOXES[:, 2] - BOXES[:, 0], BOXES[:, 3] - BOXES[:, 1]
    assert (np.minimum(w, h) * SCALE < 1).sum() >= 8
    assert (np.maximum(w, h) * SCALE > 2 * 11).sum() >= 4
    assert ((BOXES[:, 0] * SCALE > 11) | (BOXES[:, 2] < 0) | (BOXES[:, 1] * SCALE > 9) | (BOXES[:, 3] < 0)).sum() >= 4
    assert (w < 0).sum() >= 2


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [1, 2, 3, 0])
@pytest.mark.parametrize("implementation", ["auto", "einsum"])
def test_matches_numpy_reference(aligned, sampling_ratio, implementation):
    output_size = (3, 4)
    expected = roi_align_ref(FEATURES, BOXES, INDICES, output_size, SCALE, sampling_ratio, aligned)
    got = roi_align(FEATURES, BOXES, INDICES, output_size, SCALE, sampling_ratio, aligned, implementation)
    assert got.shape == (len(BOXES), 3, 4, 3)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-4, rtol=0)


def test_adaptive_grid_is_per_roi_and_differs_from_fixed():
    # Adaptive sampling is a different result from sampling_ratio=2 on big boxes (not silently fixed).
    adaptive = roi_align(FEATURES, BOXES, INDICES, 2, SCALE, 0, True).numpy()
    fixed = roi_align(FEATURES, BOXES, INDICES, 2, SCALE, 2, True).numpy()
    assert np.abs(adaptive - fixed).max() > 1e-2


def test_tiny_box_aligned_false_is_forced_to_one_pixel():
    # A 0.1 x 0.1 feature-pixel box with aligned=False covers 1x1 pixel: one sample at its centre
    # +0.5 -> bilinear at (y1 + 0.5, x1 + 0.5), computed by hand.
    fmap = np.arange(20, dtype="float32").reshape(1, 4, 5, 1)
    box = np.array([[1.2, 2.0, 1.3, 2.1]], "float32")  # x1=1.2, y1=2.0
    out = roi_align(fmap, box, [0], 1, 1.0, 1, aligned=False).numpy()
    y, x = 2.5, 1.7
    expected = (1 - 0.5) * (1 - 0.7) * 11 + (1 - 0.5) * 0.7 * 12 + 0.5 * (1 - 0.7) * 16 + 0.5 * 0.7 * 17
    assert y * 5 + x == pytest.approx(expected)  # the map is linear: value = 5y + x
    assert out[0, 0, 0, 0] == pytest.approx(expected, abs=1e-5)


def test_border_rule_clamp_and_zero():
    # Samples in [-1, 0] take the edge value; samples below -1 contribute 0 but count.
    fmap = np.full((1, 3, 3, 1), 2.0, "float32")
    # 1 bin, 2x2 samples at x, y in {-1.5 + 0.5, -1.5 + 1.5} = {-1, 0}? use box [-1.5, -1.5, 0.5, 0.5]:
    # samples at -1.0 and 0.0 (aligned=False): all valid -> 2.0
    inside = roi_align(fmap, [[-1.5, -1.5, 0.5, 0.5]], [0], 1, 1.0, 2, aligned=False)
    assert inside.numpy()[0, 0, 0, 0] == pytest.approx(2.0)
    # box [-3, -3, 1, 1]: samples at -2 and 0 per axis -> only (0, 0) valid -> 2.0 / 4
    partly = roi_align(fmap, [[-3.0, -3.0, 1.0, 1.0]], [0], 1, 1.0, 2, aligned=False)
    assert partly.numpy()[0, 0, 0, 0] == pytest.approx(0.5)
    # The same through the einsum path.
    partly = roi_align(fmap, [[-3.0, -3.0, 1.0, 1.0]], [0], 1, 1.0, 2, aligned=False, implementation="einsum")
    assert partly.numpy()[0, 0, 0, 0] == pytest.approx(0.5)


@pytest.mark.parametrize("implementation", ["auto", "einsum"])
def test_batched_boxes_equal_flat_boxes(implementation):
    boxes = BOXES[:20].reshape(2, 10, 4)
    batched = roi_align(FEATURES, boxes, None, 2, SCALE, 2, True, implementation).numpy()
    flat = roi_align(FEATURES, boxes.reshape(-1, 4), np.repeat([0, 1], 10), 2, SCALE, 2, True, implementation)
    assert batched.shape == (2, 10, 2, 2, 3)
    np.testing.assert_allclose(batched.reshape(20, 2, 2, 3), flat.numpy(), atol=1e-6)


@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_einsum_path_compiles_under_xla(sampling_ratio):
    boxes, indices = tf.constant(BOXES), tf.constant(INDICES)
    fn = tf.function(lambda f: roi_align(f, boxes, indices, 2, SCALE, sampling_ratio, True, "einsum"),
                     jit_compile=True)
    expected = roi_align_ref(FEATURES, BOXES, INDICES, (2, 2), SCALE, sampling_ratio, True)
    np.testing.assert_allclose(fn(tf.constant(FEATURES)).numpy(), expected, atol=1e-4)


@pytest.mark.parametrize("implementation,sampling_ratio", [("auto", 2), ("einsum", 2), ("einsum", 0)])
def test_gradient_wrt_features(implementation, sampling_ratio):
    # Finite differences (central, float64 input) against the analytic Jacobian of the op.
    rng = np.random.default_rng(0)
    fmap = tf.constant(rng.standard_normal((2, 3, 4, 1)))
    boxes = tf.constant([[0.3, -0.6, 3.1, 2.2], [1.0, 1.0, 9.0, 7.0], [-2.0, 0.5, 0.2, 0.9],
                         [2.1, 0.4, 3.8, 2.9]], tf.float32)
    indices = tf.constant([0, 1, 1, 0])

    @tf.function
    def fn(f):
        return tf.cast(roi_align(tf.cast(f, tf.float32), boxes, indices, 2, 1.0, sampling_ratio, True,
                                 implementation), tf.float64)

    weights = tf.constant(rng.standard_normal((4, 2, 2, 1)))  # loss = sum(weights * out)
    with tf.GradientTape() as tape:
        tape.watch(fmap)
        loss = tf.reduce_sum(weights * fn(fmap))
    grad = tape.gradient(loss, fmap).numpy()
    assert np.abs(grad).sum() > 1.0
    # Central finite differences along random directions and along single elements.
    delta = 1e-2
    directions = [rng.standard_normal(fmap.shape) for _ in range(4)]
    for index in [(0, 0, 0, 0), (1, 2, 3, 0), (0, 1, 2, 0), (1, 0, 1, 0)]:
        one_hot = np.zeros(fmap.shape)
        one_hot[index] = 1.0
        directions.append(one_hot)
    for direction in directions:
        plus = tf.reduce_sum(weights * fn(fmap + delta * direction))
        minus = tf.reduce_sum(weights * fn(fmap - delta * direction))
        numeric = float(plus - minus) / (2 * delta)
        assert np.sum(grad * direction) == pytest.approx(numeric, abs=2e-3)


def test_no_gradient_to_boxes():
    boxes = tf.Variable([[0.3, 0.6, 3.1, 2.2]])
    with tf.GradientTape() as tape:
        out = roi_align(FEATURES, boxes, [0], 2, 1.0)
    assert tape.gradient(out, boxes) is None


@pytest.mark.parametrize("sampling_ratio", [2, -1])
def test_layer_contract_flat_boxes(sampling_ratio):
    # model.fit needs every input to share the batch dimension: R == B here.
    boxes = np.array([[2.0, 3.0, 30.0, 20.0], [-4.0, 1.0, 12.0, 40.0]], "float32")
    out = run_layer_test(
        RoIAlign,
        {"output_size": (2, 3), "spatial_scale": SCALE, "sampling_ratio": sampling_ratio, "aligned": False},
        [FEATURES, boxes, np.array([1, 0], "int32")],
        expected_output_shape=(2, 2, 3, 3),
        expected_num_trainable_weights=0,
    )
    expected = roi_align_ref(FEATURES, boxes, [1, 0], (2, 3), SCALE, sampling_ratio, False)
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_layer_contract_batched_boxes():
    boxes = BOXES[:6].reshape(2, 3, 4)
    out = run_layer_test(RoIAlign, {"output_size": 2, "spatial_scale": SCALE}, [FEATURES, boxes],
                         expected_output_shape=(2, 3, 2, 2, 3))
    expected = roi_align_ref(FEATURES, BOXES[:6], [0, 0, 0, 1, 1, 1], (2, 2), SCALE, 2, True)
    np.testing.assert_allclose(out.reshape(6, 2, 2, 3), expected, atol=1e-4)


def test_layer_call_forms_and_jit_flag():
    layer = RoIAlign(2, SCALE)
    a = layer([FEATURES, BOXES[:4], INDICES[:4]])
    b = layer(FEATURES, BOXES[:4], INDICES[:4])
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert layer.compute_output_shape((2, 9, 11, 3), (4, 4), (4,)) == (4, 2, 2, 3)
    assert RoIAlign(sampling_ratio=2).supports_jit is False  # crop_and_resize has no XLA kernel
    assert RoIAlign(sampling_ratio=0).supports_jit is True
    assert RoIAlign(sampling_ratio=2, implementation="einsum").supports_jit is True


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="box_indices"):
        roi_align(FEATURES, BOXES, None, 2)
    with pytest.raises(ValueError, match="batched"):
        roi_align(FEATURES, BOXES[:4].reshape(2, 2, 4), [0, 1], 2)
    with pytest.raises(ValueError, match="last dimension of 4"):
        roi_align(FEATURES, BOXES[:, :3], INDICES, 2)
    with pytest.raises(ValueError, match="NHWC"):
        roi_align(FEATURES[0], BOXES, INDICES, 2)
    with pytest.raises(ValueError, match="sampling_ratio"):
        RoIAlign(sampling_ratio=0, implementation="crop_and_resize")
    with pytest.raises(ValueError, match="output_size"):
        RoIAlign(output_size=0)
    with pytest.raises(ValueError, match="spatial_scale"):
        RoIAlign(spatial_scale=-1.0)
    with pytest.raises(ValueError, match="implementation"):
        RoIAlign(implementation="cuda")
    with pytest.raises(ValueError, match="integers"):
        roi_align(FEATURES, BOXES, INDICES.astype("float32"), 2)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [2, -1])
def test_matches_torchvision_if_installed(aligned, sampling_ratio):
    expected = torchvision_reference("roi_align", FEATURES, BOXES, INDICES, (3, 4), SCALE, sampling_ratio, aligned)
    if expected is None:
        pytest.skip("torch/torchvision not installed (optional `bench` extra)")
    got = roi_align(FEATURES, BOXES, INDICES, (3, 4), SCALE, sampling_ratio, aligned)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-4)
