"""CIFAR ResNet builder: the paper's parameter counts, option A/B shortcuts, He init, coupled L2."""

import keras
import numpy as np
import pytest

from kerasnets.layers import ZeroPadShortcut
from kerasnets.models.resnet_cifar import blocks_per_stage, build_resnet_cifar


def trainable_params(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


# He et al. 2015, Table 6 (0.27M / 0.46M / 0.66M / 0.85M / 1.7M), exact counts.
@pytest.mark.parametrize(
    "depth, expected", [(20, 269_722), (32, 464_154), (44, 658_586), (56, 853_018), (110, 1_727_962)]
)
def test_option_a_parameter_counts_match_the_paper(depth, expected):
    assert trainable_params(build_resnet_cifar(depth)) == expected


def test_option_b_adds_two_projections():
    a, b = build_resnet_cifar(20, shortcut="A"), build_resnet_cifar(20, shortcut="B")
    # 1x1 convs 16->32 and 32->64 plus their BN scale/offset: 512 + 64 + 2048 + 128.
    assert trainable_params(b) - trainable_params(a) == 2_752
    projections = [layer for layer in b.layers if layer.name.endswith("shortcut_conv")]
    assert [tuple(layer.kernel.shape) for layer in projections] == [(1, 1, 16, 32), (1, 1, 32, 64)]
    assert all(layer.strides == (2, 2) for layer in projections)


def test_option_a_shortcuts_have_no_weights():
    model = build_resnet_cifar(20, shortcut="A")
    pads = [layer for layer in model.layers if isinstance(layer, ZeroPadShortcut)]
    assert len(pads) == 2  # first block of stages 2 and 3
    assert all(not layer.weights for layer in pads)
    assert not [layer for layer in model.layers if "shortcut" in layer.name and layer.weights]
    # 6n+1 convolutions, all 3x3: no projection anywhere.
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 19 and all(layer.kernel_size == (3, 3) for layer in convs)


def test_shapes_through_the_stages():
    model = build_resnet_cifar(8, input_shape=(32, 32, 3))
    assert model.get_layer("stage1_block1_out").output.shape[1:] == (32, 32, 16)
    assert model.get_layer("stage2_block1_out").output.shape[1:] == (16, 16, 32)
    assert model.get_layer("stage3_block1_out").output.shape[1:] == (8, 8, 64)
    assert model(np.zeros((2, 32, 32, 3), "float32")).shape == (2, 10)


@pytest.mark.parametrize("depth", [21, 7, 2, 0, -4, 20.0, "20", True])
def test_depth_must_be_6n_plus_2(depth):
    with pytest.raises(ValueError, match="6n\\+2"):
        build_resnet_cifar(depth)


def test_blocks_per_stage():
    assert [blocks_per_stage(d) for d in (8, 20, 32, 44, 56, 110, 1202)] == [1, 3, 5, 7, 9, 18, 200]


def test_bad_arguments():
    with pytest.raises(ValueError, match="'A' or 'B'"):
        build_resnet_cifar(20, shortcut="C")
    with pytest.raises(ValueError, match="weight_decay"):
        build_resnet_cifar(20, weight_decay=-1.0)


def test_l2_term_is_half_weight_decay_times_squared_kernels():
    wd = 1e-4
    model = build_resnet_cifar(8, input_shape=(8, 8, 3), weight_decay=wd, seed=3)
    kernels = [v for v in model.trainable_variables if v.path.endswith("kernel")]
    assert len(kernels) == 8  # 7 convs + classifier; BN gamma/beta and the bias are not decayed
    expected = wd / 2 * sum(float(np.sum(v.numpy().astype("float64") ** 2)) for v in kernels)
    got = float(sum(keras.ops.convert_to_numpy(loss) for loss in model.losses))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert build_resnet_cifar(8, input_shape=(8, 8, 3), weight_decay=0.0).losses == []


def test_he_init_is_untruncated_normal_with_fan_in():
    model = build_resnet_cifar(8, seed=0)
    kernel = model.get_layer("stage3_block1_conv2").kernel.numpy()  # 3x3x64x64 = 36,864 draws
    std = np.sqrt(2.0 / (3 * 3 * 64))
    np.testing.assert_allclose(kernel.std(), std, rtol=0.03)
    # A truncated normal (keras HeNormal) never exceeds 2 sigma; 36,864 untruncated draws do (~1,700 times).
    assert np.sum(np.abs(kernel) > 2 * std) > 1000


def test_seed_makes_weights_reproducible():
    a = build_resnet_cifar(8, seed=5)
    b = build_resnet_cifar(8, seed=5)
    c = build_resnet_cifar(8, seed=6)
    for va, vb in zip(a.trainable_variables, b.trainable_variables):
        np.testing.assert_array_equal(va.numpy(), vb.numpy())
    assert not np.array_equal(a.trainable_variables[0].numpy(), c.trainable_variables[0].numpy())
    # Different layers of the same model get different draws.
    k1 = a.get_layer("stage1_block1_conv1").kernel.numpy()
    k2 = a.get_layer("stage1_block1_conv2").kernel.numpy()
    assert not np.array_equal(k1, k2)


def test_sync_bn_flag_reaches_every_batch_norm():
    model = build_resnet_cifar(8, shortcut="B", sync_bn=True)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 1 + 3 * 2 + 2 and all(layer.synchronized for layer in bns)
    assert all(layer.momentum == 0.9 and layer.epsilon == 1e-5 for layer in bns)
