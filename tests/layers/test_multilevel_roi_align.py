"""MultiLevelRoIAlign: FPN level assignment (hand cases) and per-level pooling in the original box order."""

import math

import numpy as np
import pytest
import tensorflow as tf
from _roi_reference import roi_align_ref

from kerasnets.layers import MultiLevelRoIAlign
from kerasnets.ops.multilevel_roi_align import fpn_levels, multilevel_roi_align
from kerasnets.testing import run_layer_test

RNG = np.random.default_rng(11)
IMAGE = 128  # P2..P5 of a 128-pixel image: 32, 16, 8, 4
MAPS = [RNG.standard_normal((2, IMAGE // 2**level, IMAGE // 2**level, 3)).astype("float32") for level in (2, 3, 4, 5)]


def square(size, x=0.0, y=0.0):
    return [x, y, x + size, y + size]


def test_level_assignment_hand_cases():
    boxes = np.array([
        square(224),  # log2(1) = 0 -> 4
        square(112),  # log2(1/2) = -1 -> 3 (exactly on the edge: eps keeps it at 3)
        square(111.9),  # just below -> 2
        square(448),  # 5
        square(447.9),  # 4
        square(56),  # 2
        square(28),  # 1 -> clamped to 2
        square(2000),  # 7.x -> clamped to 5
        [0, 0, 224 * 4, 224 / 4],  # sqrt(wh) = 224 -> 4: area, not the long side
        [10, 10, 10, 50],  # zero area -> min level
        [50, 50, 10, 10],  # inverted -> zero area -> min level
    ], "float32")
    np.testing.assert_array_equal(fpn_levels(boxes).numpy(), [4, 3, 2, 5, 4, 2, 2, 5, 4, 2, 2])
    # Other clamps / canonical level.
    np.testing.assert_array_equal(fpn_levels(boxes[:4], 3, 4).numpy(), [4, 3, 3, 4])
    np.testing.assert_array_equal(fpn_levels(boxes[:1], 2, 6, canonical_level=5).numpy(), [5])


def test_level_formula_matches_floor_log2_on_random_boxes():
    wh = RNG.uniform(1, 1500, (200, 2)).astype("float32")
    boxes = np.concatenate([np.zeros_like(wh), wh], axis=1)
    expected = np.clip(np.floor(4 + np.log2(np.sqrt(wh[:, 0] * wh[:, 1]) / 224 + 1e-6)), 2, 5)
    np.testing.assert_array_equal(fpn_levels(boxes).numpy(), expected)


def _boxes_for_all_levels(count):
    sizes = np.exp(RNG.uniform(math.log(4), math.log(600), count))  # 4 .. 600 px: every level
    centres = RNG.uniform(-10, IMAGE + 10, (count, 2))
    aspect = np.exp(RNG.uniform(-0.7, 0.7, count))
    w, h = sizes * aspect, sizes / aspect
    return np.stack([centres[:, 0] - w / 2, centres[:, 1] - h / 2, centres[:, 0] + w / 2,
                     centres[:, 1] + h / 2], axis=1).astype("float32")


def _reference(boxes, indices, output_size, sampling_ratio, aligned):
    levels = fpn_levels(boxes).numpy()
    out = np.zeros((len(boxes), *output_size, 3))
    for r, level in enumerate(levels):
        out[r] = roi_align_ref(MAPS[level - 2], boxes[r:r + 1], indices[r:r + 1], output_size, 1.0 / 2**level,
                               sampling_ratio, aligned)[0]
    return out, levels


@pytest.mark.parametrize("sampling_ratio,aligned", [(2, False), (2, True), (0, True)])
def test_pools_each_box_at_its_level_in_original_order(sampling_ratio, aligned):
    boxes = _boxes_for_all_levels(40)
    indices = RNG.integers(0, 2, 40).astype("int32")
    expected, levels = _reference(boxes, indices, (2, 3), sampling_ratio, aligned)
    assert set(levels) == {2, 3, 4, 5}
    got = multilevel_roi_align(MAPS, boxes, indices, (2, 3), sampling_ratio=sampling_ratio, aligned=aligned)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-4)


def test_dict_input_batched_boxes_and_graph_mode():
    boxes = _boxes_for_all_levels(12).reshape(2, 6, 4)
    maps = {f"P{level}": m for level, m in zip((2, 3, 4, 5), MAPS)}
    expected, _ = _reference(boxes.reshape(12, 4), np.repeat([0, 1], 6), (2, 2), 2, True)
    got = multilevel_roi_align(maps, boxes, output_size=2)
    assert got.shape == (2, 6, 2, 2, 3)
    np.testing.assert_allclose(got.numpy().reshape(12, 2, 2, 3), expected, atol=1e-4)
    fn = tf.function(lambda ms, b: multilevel_roi_align(ms, b, output_size=2))
    np.testing.assert_allclose(fn(MAPS, boxes).numpy().reshape(12, 2, 2, 3), expected, atol=1e-4)


def test_custom_strides_and_fewer_levels():
    # Levels 3..4 only, maps given with explicit strides: small boxes clamp to P3, big to P4.
    boxes = np.array([square(10, 5, 5), square(300, -20, 0), square(120, 3, 9)], "float32")
    got = multilevel_roi_align(MAPS[1:3], boxes, [0, 1, 1], 2, levels=(3, 4), strides=(8, 16))
    expected = [roi_align_ref(MAPS[1 + (lvl - 3)], boxes[r:r + 1], [[0, 1, 1][r]], (2, 2), 1 / 2**lvl, 2, True)[0]
                for r, lvl in enumerate([3, 4, 3])]
    np.testing.assert_allclose(got.numpy(), np.stack(expected), atol=1e-4)


def test_gradient_reaches_every_used_level():
    boxes = _boxes_for_all_levels(30)
    maps = [tf.constant(m) for m in MAPS]
    with tf.GradientTape() as tape:
        for m in maps:
            tape.watch(m)
        out = multilevel_roi_align(maps, boxes, np.zeros(30, "int32"), 2)
    grads = tape.gradient(out, maps)
    assert all(g is not None and float(tf.reduce_sum(tf.abs(g[0]))) > 0 for g in grads)
    assert all(float(tf.reduce_sum(tf.abs(g[1]))) == 0 for g in grads)  # image 1 holds no box


def test_layer_contract():
    boxes = _boxes_for_all_levels(8).reshape(2, 4, 4)
    out = run_layer_test(MultiLevelRoIAlign, {"output_size": 2, "sampling_ratio": 2, "aligned": False},
                         [*MAPS, boxes], expected_output_shape=(2, 4, 2, 2, 3), expected_num_trainable_weights=0)
    expected, _ = _reference(boxes.reshape(8, 4), np.repeat([0, 1], 4), (2, 2), 2, False)
    np.testing.assert_allclose(out.reshape(8, 2, 2, 3), expected, atol=1e-4)
    layer = MultiLevelRoIAlign(output_size=2)
    nested = layer([MAPS, boxes.reshape(8, 4), np.repeat([0, 1], 4).astype("int32")])
    np.testing.assert_allclose(nested.numpy().reshape(2, 4, 2, 2, 3), layer([*MAPS, boxes]).numpy(), atol=1e-6)
    assert layer.supports_jit is False  # dynamic_partition by level


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="consecutive"):
        MultiLevelRoIAlign(levels=(2, 4))
    with pytest.raises(ValueError, match="strides"):
        MultiLevelRoIAlign(levels=(2, 3), strides=(4,))
    with pytest.raises(ValueError, match="feature maps given"):
        multilevel_roi_align(MAPS[:3], _boxes_for_all_levels(2), [0, 0])
    with pytest.raises(ValueError, match="no feature map for level 5"):
        multilevel_roi_align({"P2": MAPS[0], "P3": MAPS[1], "P4": MAPS[2]}, _boxes_for_all_levels(2), [0, 0])
    with pytest.raises(ValueError, match="min_level"):
        fpn_levels(np.zeros((1, 4), "float32"), 5, 2)
