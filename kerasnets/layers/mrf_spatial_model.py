"""`MRFSpatialModel` (Tompson et al. 2014): one learned round of sum-product belief propagation on heatmaps."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from kerasnets.saving import register


def inverse_softplus(y):
    """`x` with `softplus(x) = y` (`y > 0`), in NumPy: `log(expm1(y))`, stable for large `y`."""
    y = np.asarray(y, np.float64)
    if np.any(y <= 0):
        raise ValueError("inverse_softplus needs positive values")
    return np.where(y > 30, y, np.log(np.expm1(np.minimum(y, 30))))


@register
class MRFSpatialModel(keras.layers.Layer):
    """Tompson et al.'s spatial model: each joint's heatmap refined by every conditioning joint's heatmap.

    The paper's MRF-inspired model (one round of sum-product message passing
    with learned, translation-invariant pairwise priors) writes the refined
    marginal of joint A as

        p_A = 1/Z prod_{v in V} ( p_{A|v} * p_v + b_{v->A} )

    (`*` a convolution with a large kernel: the distribution of A's position
    relative to v's). It is computed in log space with positivity enforced
    by SoftPlus and ReLU (paper Eq. 2):

        e_A = exp( sum_{v in V_A} log( SoftPlus(w_{A|v}) * ReLU(e_v) + SoftPlus(b_{v->A}) ) )

    where `e_v` is the part detector's heatmap of joint v, `w_{A|v}` a learned
    `kh x kw` kernel and `b_{v->A}` a learned scalar per pair. The
    normaliser `1/Z` is not applied (`e_A` is trained against the target
    heatmaps directly, as the part detector's output is). `V_A` lists the
    conditioning joints of A: all joints (the paper's fully connected graph,
    including `v = A` as a unary term) or any subset given by `pairs`.

    The convolution is a cross-correlation (Keras' convention) with 'same'
    padding: with the kernel's centre at `(ch, cw)`, a one-hot `e_v` at `y`
    and a one-hot kernel at `(ch + dy, cw + dx)` put their product at
    `y - (dy, dx)`. So `w_{A|v}[ch - d]` holds the weight of displacement
    `d = pos(A) - pos(v)` (`pairwise_displacement_prior` in
    `kerasnets.models.tompson` builds such kernels from data). A kernel of
    `(2h - 1) x (2w - 1)` covers every displacement on an `h x w` map (the
    paper and the max-andr reimplementation use kernels twice the heatmap
    size); the paper evaluates them with FFTs, here a depthwise convolution
    (TFLite builtin).

    Args:
        num_joints: `K`, channels of the input and output heatmaps.
        kernel_size: `(kh, kw)` odd sizes of the pairwise kernels.
        pairs: `(A, v)` index pairs (target joint, conditioning joint); default
            all `K^2` pairs. Every joint needs at least one pair.
        kernel_initializer: initializer of the raw kernels `w` (before
            SoftPlus); default a constant giving `SoftPlus(w) = 1 / (kh kw)`.
        bias_initializer: initializer of the raw biases `b` (before SoftPlus);
            default -3 (`SoftPlus(b) ~ 0.049`).

    Call arguments:
        inputs: `[N, h, w, K]` part-detector heatmaps `e`.

    Returns:
        `[N, h, w, K]` refined heatmaps `e_A` (positive).

    Reference:
        Tompson, Jain, LeCun, Bregler. "Joint Training of a Convolutional
        Network and a Graphical Model for Human Pose Estimation." NIPS 2014,
        arXiv:1406.2984. Section 3.2.
    """

    def __init__(self, num_joints, kernel_size=(15, 15), pairs=None, kernel_initializer=None,
                 bias_initializer=None, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        if isinstance(num_joints, bool) or not isinstance(num_joints, int) or num_joints < 1:
            raise ValueError(f"num_joints must be a positive int, got {num_joints!r}")
        kernel_size = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(int(k) for k in kernel_size)
        if len(kernel_size) != 2 or any(k < 1 or k % 2 == 0 for k in kernel_size):
            raise ValueError(f"kernel_size must be two odd positive ints, got {kernel_size!r}")
        if pairs is None:
            pairs = [(a, v) for a in range(num_joints) for v in range(num_joints)]
        pairs = [(int(a), int(v)) for a, v in pairs]
        for a, v in pairs:
            if not (0 <= a < num_joints and 0 <= v < num_joints):
                raise ValueError(f"pair ({a}, {v}) is out of range for {num_joints} joints")
        missing = sorted(set(range(num_joints)) - {a for a, _ in pairs})
        if missing:
            raise ValueError(f"joints {missing} have no conditioning pair (every target joint needs one)")
        self.num_joints = num_joints
        self.kernel_size = kernel_size
        self.pairs = pairs
        uniform = float(inverse_softplus(1.0 / (kernel_size[0] * kernel_size[1])))
        self.kernel_initializer = keras.initializers.get(
            kernel_initializer if kernel_initializer is not None else keras.initializers.Constant(uniform)
        )
        self.bias_initializer = keras.initializers.get(
            bias_initializer if bias_initializer is not None else keras.initializers.Constant(-3.0)
        )

    def build(self, input_shape):
        if input_shape[-1] != self.num_joints:
            raise ValueError(f"MRFSpatialModel expects {self.num_joints} heatmap channels, got shape {input_shape}")
        p = len(self.pairs)
        self.kernel = self.add_weight(name="kernel", shape=(*self.kernel_size, p, 1), initializer=self.kernel_initializer)
        self.bias = self.add_weight(name="bias", shape=(p,), initializer=self.bias_initializer)
        onehot = np.zeros((p, self.num_joints), np.float32)
        for i, (a, _) in enumerate(self.pairs):
            onehot[i, a] = 1.0
        self._to_target = onehot  # sums each target's pair energies (a constant, not a weight)

    def call(self, inputs):
        e = tf.convert_to_tensor(inputs)
        cond = tf.nn.relu(tf.gather(e, [v for _, v in self.pairs], axis=-1))  # ReLU(e_v) per pair
        kernel = tf.nn.softplus(tf.cast(self.kernel, e.dtype))
        msg = tf.nn.depthwise_conv2d(cond, kernel, strides=[1, 1, 1, 1], padding="SAME")
        log_terms = tf.math.log(msg + tf.nn.softplus(tf.cast(self.bias, e.dtype)))
        log_e = tf.tensordot(log_terms, tf.constant(self._to_target, e.dtype), axes=[[3], [0]])
        return tf.exp(log_e)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "num_joints": self.num_joints,
            "kernel_size": list(self.kernel_size),
            "pairs": [list(p) for p in self.pairs],
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
