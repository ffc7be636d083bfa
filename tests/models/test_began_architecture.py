"""BEGAN architecture: the paper's layout, sizes and the 128x128 parameter count."""

import keras
import numpy as np
import pytest

from kerasnets.models.began import (
    PAPER_128_PARAMS,
    build_began_discriminator,
    build_began_generator,
    num_downsamplings,
)


def _convs(model):
    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.Conv2D)]


def test_param_count_at_128_matches_the_paper_within_3_percent():
    g = build_began_generator(128, n=128, h=64, channels=3)
    d = build_began_discriminator(128, n=128, h=64, channels=3)
    # Hand count (see kerasnets.models.began): decoder = Dense(64 -> 8*8*128)
    # + 10 convs 128->128 + output conv 128->3.
    decoder = (64 * 8192 + 8192) + 10 * (9 * 128 * 128 + 128) + (9 * 128 * 3 + 3)
    assert g.count_params() == decoder == 2_011_779
    assert d.get_layer("decoder").count_params() == decoder
    # encoder: stem 3->n, then per down-sampling l: n*l->n*l and n*l->n*(l+1) stride 2, Dense(8*8*5n -> 64)
    conv = lambda cin, cout: 9 * cin * cout + cout  # noqa: E731
    encoder = conv(3, 128) + sum(conv(128 * l, 128 * l) + conv(128 * l, 128 * (l + 1)) for l in range(1, 5))
    encoder += 8 * 8 * 640 * 64 + 64
    assert d.get_layer("encoder").count_params() == encoder == 12_950_080
    total = g.count_params() + d.count_params()
    assert total == 16_973_638
    assert abs(total - PAPER_128_PARAMS) / PAPER_128_PARAMS < 0.03


def test_layout_3x3_elu_linear_growth_stride_two_nearest_upsampling():
    d = build_began_discriminator(32, n=8, h=16, channels=1)
    encoder_convs = _convs(d.get_layer("encoder"))
    assert [c.filters for c in encoder_convs] == [8, 8, 16, 16, 24]  # n, then n*l -> n*(l+1)
    assert [c.strides for c in encoder_convs] == [(1, 1), (1, 1), (2, 2), (1, 1), (2, 2)]
    assert all(c.kernel_size == (3, 3) for c in _convs(d))
    decoder = d.get_layer("decoder")
    *hidden, out = _convs(decoder)
    assert len(hidden) == 6 and all(c.activation is keras.activations.elu for c in hidden)
    assert out.activation is keras.activations.linear and out.filters == 1
    ups = [layer for layer in decoder.layers if isinstance(layer, keras.layers.UpSampling2D)]
    assert len(ups) == 2 and all(u.interpolation == "nearest" for u in ups)
    # The embedding and the 8x8 projection have no non-linearity.
    dense = [layer for layer in d._flatten_layers() if isinstance(layer, keras.layers.Dense)]
    assert all(layer.activation is keras.activations.linear for layer in dense)
    assert tuple(d.get_layer("encoder").output.shape) == (None, 16)
    assert tuple(d.output.shape) == (None, 32, 32, 1)


def test_8x8_images_have_no_down_sampling():
    d = build_began_discriminator(8, n=4, h=8, channels=1)
    assert all(c.strides == (1, 1) for c in _convs(d))
    g = build_began_generator(8, n=4, h=8, channels=1)
    assert not [layer for layer in g.layers if isinstance(layer, keras.layers.UpSampling2D)]
    assert tuple(g.output.shape) == (None, 8, 8, 1)


def test_skip_connections_concatenate_upsampled_h0():
    plain = build_began_generator(32, n=8, h=8, channels=3)
    skip = build_began_generator(32, n=8, h=8, channels=3, skip=True)
    # After each of the 2 upsamplings the first conv sees 2n channels: +9*8*8 weights each.
    assert skip.count_params() - plain.count_params() == 2 * 9 * 8 * 8
    concat = [layer for layer in skip.layers if isinstance(layer, keras.layers.Concatenate)]
    assert len(concat) == 2
    z = np.random.default_rng(0).uniform(-1, 1, (2, 8)).astype("float32")
    assert skip(z).shape == (2, 32, 32, 3)


@pytest.mark.parametrize("size", [0, 4, 12, 48, 7.0])
def test_bad_image_size(size):
    with pytest.raises(ValueError, match="power of two"):
        num_downsamplings(size)


def test_bad_widths():
    with pytest.raises(ValueError, match="n must be"):
        build_began_generator(16, n=0, h=8)


def test_seeded_initialisation_is_reproducible_and_distinct_per_network():
    a = build_began_generator(16, n=4, h=4, channels=1, seed=3).get_weights()
    b = build_began_generator(16, n=4, h=4, channels=1, seed=3).get_weights()
    c = build_began_generator(16, n=4, h=4, channels=1, seed=4).get_weights()
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    # The discriminator's decoder has the generator's architecture but not its weights.
    d = build_began_discriminator(16, n=4, h=4, channels=1, seed=3).get_layer("decoder").get_weights()
    assert not np.array_equal(a[0], d[0])
