"""fold_batch_norm: folded models equal the originals (<= 1e-5), report unfoldable BNs, convert to TFLite."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnets.layers import BatchRenormalization, GhostBatchNormalization, fold_batch_norm
from kerasnets.layers.bn_folding import bn_inference_affine


def _randomize_bn(model, rng):
    """Non-trivial inference statistics and affine parameters in every BN-like layer."""
    for layer in model._flatten_layers(include_self=False):
        if hasattr(layer, "moving_mean"):
            c = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(size=c))
            if hasattr(layer, "moving_variance"):
                layer.moving_variance.assign(rng.uniform(0.05, 4.0, size=c))
            if hasattr(layer, "moving_stddev"):
                layer.moving_stddev.assign(rng.uniform(0.2, 2.0, size=c))
            layer.gamma.assign(rng.normal(size=c))
            layer.beta.assign(rng.normal(size=c))
    return model


def _max_diff(a, b, x):
    return float(np.abs(keras.ops.convert_to_numpy(a(x)) - keras.ops.convert_to_numpy(b(x))).max())


def _conv_net_sequential():
    return keras.Sequential(
        [
            keras.Input((10, 10, 3)),
            keras.layers.Conv2D(8, 3, use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.DepthwiseConv2D(3, depth_multiplier=2),
            keras.layers.BatchNormalization(epsilon=1e-5),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(6),
            BatchRenormalization(),
            keras.layers.Activation("sigmoid"),
            keras.layers.BatchNormalization(),  # after an activation: cannot fold
            keras.layers.Dense(3),
        ]
    )


def test_inference_affine_matches_layer():
    rng = np.random.default_rng(0)
    layers = (keras.layers.BatchNormalization(), GhostBatchNormalization(virtual_batch_size=2), BatchRenormalization())
    for layer in layers:
        model = keras.Sequential([keras.Input((5,)), layer])
        _randomize_bn(model, rng)
        x = rng.normal(size=(4, 5)).astype("float32")
        scale, offset = bn_inference_affine(layer)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x, training=False)), x * scale + offset, atol=1e-5)


def test_sequential_conv_net_folds_within_1e5():
    rng = np.random.default_rng(1)
    model = _randomize_bn(_conv_net_sequential(), rng)
    folded, report = fold_batch_norm(model, return_report=True)
    assert isinstance(folded, keras.Sequential)
    assert [bn for _, bn in report.folded] == [model.layers[i].name for i in (1, 4, 8)]
    assert [bn for bn, _ in report.unfolded] == [model.layers[10].name]
    assert "Activation" in report.unfolded[0][1]
    assert sum(isinstance(l, (keras.layers.BatchNormalization, BatchRenormalization)) for l in folded.layers) == 1
    x = rng.normal(size=(4, 10, 10, 3)).astype("float32")
    assert _max_diff(model, folded, x) <= 1e-5
    # The original keeps its own weights.
    assert model.layers[0].bias is None
    assert folded.layers[0].use_bias


def test_functional_net_with_branches():
    rng = np.random.default_rng(2)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)
    x = keras.layers.BatchNormalization()(x)
    a = keras.layers.ReLU()(x)
    b = keras.layers.Conv2D(4, 1, activation="relu")(a)
    b = keras.layers.BatchNormalization()(b)  # activation in between: unfoldable
    c = keras.layers.Conv2D(4, 1)(a)
    side = keras.layers.ReLU()(c)  # c also feeds `side`: unfoldable
    c = keras.layers.BatchNormalization()(c)
    y = keras.layers.Add()([b, c, side])
    y = keras.layers.BatchNormalization()(y)  # after Add: unfoldable
    y = keras.layers.Conv1D(5, 2)(keras.layers.Reshape((64, 4))(y))
    y = GhostBatchNormalization(virtual_batch_size=2)(y)
    inner = keras.Sequential(
        [keras.Input((63, 5)), keras.layers.Dense(3), keras.layers.BatchNormalization()], name="inner"
    )
    out = inner(y)
    model = _randomize_bn(keras.Model(inp, out), rng)
    folded, report = fold_batch_norm(model, return_report=True)
    folded_bns = {bn for _, bn in report.folded}
    assert len(report.folded) == 3 and "inner/" + inner.layers[1].name in folded_bns
    reasons = " | ".join(why for _, why in report.unfolded)
    assert len(report.unfolded) == 3
    assert "non-linear activation" in reasons and "used elsewhere" in reasons and "Add" in reasons
    x = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    assert _max_diff(model, folded, x) <= 1e-5


def test_channels_first_and_no_bias_dense():
    rng = np.random.default_rng(3)
    inp = keras.Input((3, 6, 6))
    x = keras.layers.Conv2D(5, 3, data_format="channels_first")(inp)
    x = keras.layers.BatchNormalization(axis=1)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(4, use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    model = _randomize_bn(keras.Model(inp, x), rng)
    folded, report = fold_batch_norm(model, return_report=True)
    assert len(report.folded) == 2 and not report.unfolded
    assert _max_diff(model, folded, rng.normal(size=(2, 3, 6, 6)).astype("float32")) <= 1e-5


def test_wrong_axis_and_first_layer_are_reported():
    inp = keras.Input((6, 4))
    x = keras.layers.BatchNormalization()(inp)
    x = keras.layers.Dense(4)(x)
    x = keras.layers.BatchNormalization(axis=1)(x)  # normalizes the time axis, not Dense's outputs
    model = keras.Model(inp, x)
    folded, report = fold_batch_norm(model, return_report=True)
    assert not report.folded
    reasons = [why for _, why in report.unfolded]
    assert reasons[0] == "first layer of the model" and "output-channel axis" in reasons[1]
    x = np.random.default_rng(4).normal(size=(2, 6, 4)).astype("float32")
    assert _max_diff(model, folded, x) <= 1e-6


def test_subclassed_model_is_rejected():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="subclassed"):
        fold_batch_norm(net)


def _graph_ops(model, shape):
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(tf.TensorSpec(shape, tf.float32))
    return [op.type for op in fn.graph.get_operations()]


@pytest.mark.slow
def test_folded_model_converts_to_tflite_without_bn_ops():
    rng = np.random.default_rng(5)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Flatten(),
            keras.layers.Dense(6),
            BatchRenormalization(),
            keras.layers.Activation("sigmoid"),
        ]
    )
    model = _randomize_bn(model, rng)
    folded = fold_batch_norm(model)
    # The TF graph (what a SavedModel / TF Serving runs) loses the BN arithmetic.
    before, after = _graph_ops(model, (1, 8, 8, 3)), _graph_ops(folded, (1, 8, 8, 3))
    assert "Rsqrt" in before or "RealDiv" in before
    assert "Rsqrt" not in after and "RealDiv" not in after and len(after) < len(before)

    def tflite_ops(m):
        content = tf.lite.TFLiteConverter.from_keras_model(m).convert()
        interpreter = tf.lite.Interpreter(model_content=content)
        interpreter.allocate_tensors()
        return interpreter, [op["op_name"] for op in interpreter._get_ops_details()]

    interpreter, ops = tflite_ops(folded)
    _, ops_original = tflite_ops(model)
    assert not {"MUL", "ADD", "SUB", "RSQRT", "DIV"} & set(ops), ops
    # The converter fuses keras BN after CONV_2D itself, but leaves BatchRenormalization's
    # arithmetic after FULLY_CONNECTED (SUB, MUL): folding removes it.
    assert {"SUB", "MUL"} <= set(ops_original)
    assert len(ops) < len(ops_original)
    x = rng.normal(size=(1, 8, 8, 3)).astype("float32")
    runner = interpreter.get_signature_runner()
    (out,) = runner(**{interpreter.get_signature_list()["serving_default"]["inputs"][0]: x}).values()
    np.testing.assert_allclose(out, keras.ops.convert_to_numpy(model(x)), atol=1e-5)
