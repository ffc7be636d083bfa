"""8-bit symmetric quantization: the formulas, two's-complement bits, single-bit flips, files."""

import keras
import numpy as np
import pytest

from kerasnets.attacks.quantization import (
    BIT_VALUES,
    QuantizedModel,
    bits_of,
    dequantize,
    flip_bit_value,
    hamming_distance,
    quantize_symmetric,
)


def _mlp(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(6,))
    h = keras.layers.Dense(5, activation="relu", name="d0")(inputs)
    out = keras.layers.Dense(3, name="d1")(h)
    return keras.Model(inputs, out)


def test_step_is_max_abs_over_127_and_round_trip_error_is_at_most_half_a_step():
    w = np.random.default_rng(0).normal(size=(40, 7)).astype("float32")
    q, step = quantize_symmetric(w)
    assert q.dtype == np.int8
    assert step == pytest.approx(np.max(np.abs(w)) / 127.0)
    assert q.min() >= -127 and q.max() <= 127
    assert np.max(np.abs(q)) == 127  # the largest weight lands on the last level
    err = np.abs(dequantize(q, step) - w)
    assert err.max() <= step / 2 + 1e-7
    # hand case: step = 1.27 / 127 = 0.01
    q2, s2 = quantize_symmetric(np.array([1.27, -0.004, 0.006, -1.0], "float32"))
    assert s2 == pytest.approx(0.01)
    np.testing.assert_array_equal(q2, [127, 0, 1, -100])


def test_all_zero_tensor_and_bad_bit_width():
    q, step = quantize_symmetric(np.zeros((3,), "float32"))
    assert step == 1.0 and not q.any()
    with pytest.raises(ValueError, match="8-bit"):
        quantize_symmetric(np.ones(3), num_bits=4)


def test_twos_complement_bits_and_values():
    q = np.array([5, -1, -128, 127, 0], np.int8)
    bits = bits_of(q)
    np.testing.assert_array_equal(bits[0], [1, 0, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(bits[1], [1] * 8)
    np.testing.assert_array_equal(bits[2], [0] * 7 + [1])
    np.testing.assert_array_equal(bits[3], [1] * 7 + [0])
    # q = sum_i b_i v_i with v = (1, 2, ..., 64, -128)
    np.testing.assert_array_equal(bits.astype(int) @ BIT_VALUES, q)


def test_flip_bit_value_changes_one_bit_of_one_element():
    q = np.array([[3, -7], [100, -128]], np.int8)
    out = flip_bit_value(q, 2, 7)  # MSB of 100 -> 100 - 128
    assert out[1, 0] == -28
    assert hamming_distance({"a": q}, {"a": out}) == 1
    mask = np.ones_like(q, bool)
    mask[1, 0] = False
    np.testing.assert_array_equal(out[mask], q[mask])
    assert flip_bit_value(q, 0, 0)[0, 0] == 2
    with pytest.raises(ValueError, match="bit"):
        flip_bit_value(q, 0, 8)


def test_quantized_model_kernels_are_dequantized_codes_and_original_is_untouched():
    model = _mlp()
    before = [w.copy() for w in model.get_weights()]
    qm = QuantizedModel.from_model(model)
    assert qm.layer_names == ("d0", "d1")
    for name in qm.layer_names:
        kernel = keras.ops.convert_to_numpy(qm.model.get_layer(name).kernel)
        np.testing.assert_array_equal(kernel, dequantize(qm.q[name], qm.steps[name]))
        assert np.abs(kernel - keras.ops.convert_to_numpy(model.get_layer(name).kernel)).max() <= qm.steps[name] / 2 + 1e-7
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # biases are kept in float
    np.testing.assert_array_equal(qm.model.get_layer("d0").bias.numpy(), model.get_layer("d0").bias.numpy())
    assert qm.num_bits == 8 * (6 * 5 + 5 * 3)


def test_single_flip_changes_exactly_one_bit_of_one_weight():
    qm = QuantizedModel.from_model(_mlp())
    clean = qm.snapshot()
    old, new = qm.flip_bit("d1", 4, 6)
    assert hamming_distance(clean, qm.q) == 1
    changed = {n: np.flatnonzero(clean[n].reshape(-1) != qm.q[n].reshape(-1)) for n in qm.layer_names}
    assert list(changed["d0"]) == [] and list(changed["d1"]) == [4]
    assert new - old in (64, -64)
    kernel = keras.ops.convert_to_numpy(qm.model.get_layer("d1").kernel).reshape(-1)
    assert kernel[4] == pytest.approx(new * qm.steps["d1"])
    qm.restore(clean)
    assert hamming_distance(clean, qm.q) == 0
    with pytest.raises(ValueError, match="not a quantized layer"):
        qm.flip_bit("nope", 0, 0)
    with pytest.raises(ValueError, match="out of range"):
        qm.flip_bit("d1", 999, 0)


def test_save_and_load_codes(tmp_path):
    model = _mlp()
    qm = QuantizedModel.from_model(model)
    path = str(tmp_path / "q.npz")
    qm.save(path)
    q, steps = QuantizedModel.load_codes(path)
    assert set(q) == set(qm.layer_names)
    for name in qm.layer_names:
        np.testing.assert_array_equal(q[name], qm.q[name])
        assert q[name].dtype == np.int8
        assert steps[name] == qm.steps[name]
    # the codes rebuild the same quantized model
    float_copy = keras.models.clone_model(model)
    float_copy.set_weights(model.get_weights())
    rebuilt = QuantizedModel(float_copy, q, steps)
    x = np.random.default_rng(1).normal(size=(4, 6)).astype("float32")
    np.testing.assert_allclose(rebuilt.model(x), qm.model(x), atol=1e-6)
