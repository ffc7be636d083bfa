"""to_pruned_model: subnet layers -> plain Dense/Conv2D with W * mask, same outputs, builtin TFLite ops."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnets.export.pruned import to_pruned_model
from kerasnets.layers import EdgePopupConv2D
from kerasnets.layers import EdgePopupDense
from kerasnets.layers import SupermaskConv2D
from kerasnets.layers import SupermaskDense
from kerasnets.layers import _subnet

RANDOM_SCORES = keras.initializers.RandomNormal(stddev=1.0, seed=11)


def _mixed_model(eval_mask="threshold"):
    inputs = keras.Input((8, 8, 3))
    x = EdgePopupConv2D(6, 3, k=0.4, padding="same", activation="relu", seed=1, name="ep_conv")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = SupermaskConv2D(5, 3, activation="relu", seed=2, scores_initializer=RANDOM_SCORES, use_bias=True,
                        bias_initializer=keras.initializers.RandomNormal(seed=4), eval_mask=eval_mask)(x)
    x = keras.layers.BatchNormalization(center=False, scale=False)(x)
    x = keras.layers.Flatten()(x)
    x = SupermaskDense(7, activation="relu", seed=3, scores_initializer=RANDOM_SCORES, dynamic_scaling=True)(x)
    outputs = EdgePopupDense(4, k=0.5, activation="softmax", seed=5)(x)
    return keras.Model(inputs, outputs)


def test_outputs_equal_and_layers_plain():
    model = _mixed_model()
    x = np.random.default_rng(0).normal(size=(5, 8, 8, 3)).astype("float32")
    # make the BN statistics non-trivial so their copy is checked too
    bn = [lyr for lyr in model.layers if isinstance(lyr, keras.layers.BatchNormalization)][0]
    bn.moving_mean.assign(np.full(bn.moving_mean.shape, 0.3, "float32"))
    bn.moving_variance.assign(np.full(bn.moving_variance.shape, 2.0, "float32"))
    pruned = to_pruned_model(model)
    assert not any(isinstance(lyr, _subnet.SubnetLayer) for lyr in pruned.layers)
    kinds = [type(lyr).__name__ for lyr in pruned.layers]
    assert kinds.count("Conv2D") == 2 and kinds.count("Dense") == 2
    np.testing.assert_allclose(pruned(x, training=False), model(x, training=False), atol=1e-6)
    conv = pruned.get_layer("ep_conv")
    n = conv.kernel.shape.num_elements()
    assert int(np.count_nonzero(conv.kernel.numpy())) == n - int(0.6 * n)
    # pure Keras: reloads without kerasnets' custom objects
    assert all(type(lyr).__module__.startswith("keras.") for lyr in pruned.layers)


def test_nested_model_converted():
    inner = keras.Sequential([keras.Input((6,)), EdgePopupDense(4, seed=1, activation="relu")], name="inner")
    inputs = keras.Input((6,))
    outputs = EdgePopupDense(2, seed=2)(inner(inputs))
    model = keras.Model(inputs, outputs)
    pruned = to_pruned_model(model)
    x = np.random.default_rng(1).normal(size=(3, 6)).astype("float32")
    np.testing.assert_allclose(pruned(x), model(x), atol=1e-6)
    nested = pruned.get_layer("inner")
    assert isinstance(nested.layers[-1], keras.layers.Dense)


def test_rejects_subclassed_and_sampled_masks():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = EdgePopupDense(2)

        def call(self, x):
            return self.d(x)

    sub = Sub()
    sub(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="functional or Sequential"):
        to_pruned_model(sub)
    with pytest.raises(ValueError, match="eval_mask='sample'"):
        to_pruned_model(_mixed_model(eval_mask="sample"))


@pytest.mark.slow
def test_tflite_builtin_ops_only(tmp_path):
    model = _mixed_model()
    pruned = to_pruned_model(model)
    x = np.random.default_rng(2).normal(size=(1, 8, 8, 3)).astype("float32")
    converter = tf.lite.TFLiteConverter.from_keras_model(pruned)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    flat = converter.convert()
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=flat)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    got = interp.get_tensor(interp.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, model(x, training=False).numpy(), atol=1e-5)
