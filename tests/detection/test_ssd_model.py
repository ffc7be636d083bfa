"""SSD network: the paper's SSD300 layout (8732 default boxes), the reduced recipe network, L2Normalization."""

import numpy as np
import pytest

from kerasnets.models.ssd import SSD300_VGG16, L2Normalization, build_ssd, build_ssd300_vgg16, ssd_feature_sizes
from kerasnets.ops.anchors import ssd_default_boxes, ssd_scales
from kerasnets.testing import run_layer_test


def test_ssd300_vgg16_layout_has_8732_default_boxes():
    model = build_ssd300_vgg16(num_classes=20)
    sizes = ssd_feature_sizes(model)
    assert sizes == [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]  # conv4_3, fc7, conv8_2 .. conv11_2
    boxes = ssd_default_boxes(sizes, 300, SSD300_VGG16["aspect_ratios"])
    assert len(boxes) == 8732
    assert [tuple(o.shape) for o in model.outputs] == [(None, 8732, 21), (None, 8732, 4)]
    # 4, 6, 6, 6, 4, 4 boxes per location: 38^2*4 + 19^2*6 + 10^2*6 + 5^2*6 + 3^2*4 + 4
    assert 38 * 38 * 4 + 19 * 19 * 6 + 10 * 10 * 6 + 5 * 5 * 6 + 9 * 4 + 4 == 8732
    assert round(model.count_params() / 1e6, 1) == 26.3  # the Caffe SSD300 VOC model's size
    assert "source_0_norm" in {layer.name for layer in model.layers}  # conv4_3 L2Norm without BatchNorm
    assert model.get_layer("fc6").dilation_rate == (6, 6)


def test_reduced_network_heads_follow_the_default_box_order():
    num_classes = 3
    model = build_ssd(64, num_classes, stage_widths=(8, 8, 16), stage_depths=(1, 1, 1), top_widths=(16,),
                      fc_width=16, extras=((16, 2, "same"), (16, 2, "same")), seed=1)
    sizes = ssd_feature_sizes(model)
    assert sizes == [(16, 16), (8, 8), (4, 4), (2, 2)]
    ratios = [(2.0,), (2.0, 3.0), (2.0, 3.0), (2.0,)]
    boxes = ssd_default_boxes(sizes, 64, ratios, scales=ssd_scales(4))
    expected = 16 * 16 * 4 + 8 * 8 * 6 + 4 * 4 * 6 + 2 * 2 * 4
    assert len(boxes) == expected
    images = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    logits, deltas = (np.asarray(t) for t in model(images))
    assert logits.shape == (2, expected, num_classes + 1) and deltas.shape == (2, expected, 4)
    # Entry (y, x, j) of level 0 is the class conv's output at cell (y, x), channels j*(K+1)..: same order
    # as ssd_default_boxes (row-major cells, then the k boxes of a cell).
    head = model.get_layer("class_head_0")
    import keras

    probe = keras.Model(model.inputs, head.output)
    raw = np.asarray(probe(images))  # [2, 16, 16, 4 * 4]
    y, x, j = 5, 11, 2
    index = (y * 16 + x) * 4 + j
    np.testing.assert_allclose(logits[:, index], raw[:, y, x, j * 4 : (j + 1) * 4], rtol=1e-5, atol=1e-6)
    cx, cy = (boxes[index, 0] + boxes[index, 2]) / 2, (boxes[index, 1] + boxes[index, 3]) / 2
    np.testing.assert_allclose([cx, cy], [(x + 0.5) * 4, (y + 0.5) * 4])


def test_build_ssd_rejects_bad_layouts():
    with pytest.raises(ValueError, match="differ in length"):
        build_ssd(64, 3, stage_widths=(8, 16), stage_depths=(1,))
    with pytest.raises(ValueError, match="one entry per source map"):
        build_ssd(64, 3, aspect_ratios=[(2.0,)] * 2)
    with pytest.raises(ValueError, match="num_classes"):
        build_ssd(64, 0)


def test_l2_normalization_hand_values_and_layer_contract():
    x = np.array([[[[3.0, 4.0]]]], np.float32)  # norm 5
    out = run_layer_test(L2Normalization, {"scale": 20.0}, x, expected_output_shape=(1, 1, 1, 2),
                         expected_num_trainable_weights=1)
    np.testing.assert_allclose(out, [[[[12.0, 16.0]]]], rtol=1e-5)
