"""Losses of "Improved Techniques for Training GANs" (Salimans et al. 2016, arXiv:1606.03498).

Each technique is a function on tensors (or, for historical averaging, a
small layer holding the running means), usable on its own in any GAN:

* feature matching (section 3.1):
  ``|| E_x f(x) - E_z f(G(z)) ||_2^2`` on an intermediate discriminator layer f;
* historical averaging (3.3): ``|| theta - (1/t) sum_i theta[i] ||^2`` per player;
* one-sided label smoothing (3.4): real targets alpha = 0.9, fake targets stay 0;
* the semi-supervised K+1 classifier (section 5): with the fake class logit
  fixed at 0, ``D(x) = Z(x) / (Z(x) + 1)``, ``Z(x) = sum_k exp l_k(x)``, i.e.
  ``D(x) = sigmoid(logsumexp_k l_k(x))``.

Minibatch discrimination is a layer (`kerasnets.layers.MinibatchDiscrimination`),
virtual batch normalisation too (`kerasnets.layers.VirtualBatchNormalization`).

All losses here are per-replica means; divide by the replica count
(`kerasnets.distribute.scale_loss`) before taking gradients under a
distribution strategy.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasnets.saving import register


def feature_matching_loss(real_features, fake_features, norm: str = "l2"):
    """|| mean_x f(x) - mean_z f(G(z)) ||, squared L2 (paper) or L1 (the repo's CIFAR/SVHN code).

    `real_features`, `fake_features`: [N, ...] activations of the same
    discriminator layer. "l2" sums the squared differences of the batch means
    (the paper's squared L2 norm); "l1" sums their absolute values.
    """
    axis = 0
    real_mean = tf.reduce_mean(tf.reshape(real_features, [tf.shape(real_features)[0], -1]), axis=axis)
    fake_mean = tf.reduce_mean(tf.reshape(fake_features, [tf.shape(fake_features)[0], -1]), axis=axis)
    diff = real_mean - fake_mean
    if norm == "l2":
        return tf.reduce_sum(tf.square(diff))
    if norm == "l1":
        return tf.reduce_sum(tf.abs(diff))
    raise ValueError(f"norm must be 'l2' or 'l1', got {norm!r}")


def one_sided_label_smoothing_losses(real_logits, fake_logits, real_target: float = 0.9):
    """Discriminator cross-entropies with real targets `real_target` and fake targets 0.

    Returns (loss on reals, loss on fakes), both means over the batch. Only the
    positive side is smoothed: smoothing fakes too (Keras'
    `BinaryCrossentropy(label_smoothing=...)` does both) would reward the
    generator for samples where p_data is 0. The optimal discriminator becomes
    D(x) = alpha p_data / (p_data + p_model).
    """
    if not 0.0 < real_target <= 1.0:
        raise ValueError(f"real_target must be in (0, 1], got {real_target}")
    real_loss = tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.fill(tf.shape(real_logits), tf.cast(real_target, real_logits.dtype)), logits=real_logits
    )
    fake_loss = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.zeros_like(fake_logits), logits=fake_logits)
    return tf.reduce_mean(real_loss), tf.reduce_mean(fake_loss)


def k_plus_one_real_probability(class_logits):
    """D(x) = Z/(Z+1) with Z = sum_k exp l_k: the K+1 classifier's probability that x is real."""
    return tf.sigmoid(tf.reduce_logsumexp(class_logits, axis=-1))


def semi_supervised_losses(labeled_logits, labels, unlabeled_logits, fake_logits):
    """The K+1 discriminator's losses (section 5), with l_{K+1} = 0.

    L_sup   = -E_{x,y} log p(y | x, y < K+1)
            = mean( logsumexp(l(x)) - l_y(x) )                      (labelled data)
    L_unsup = -E_x log D(x) - E_z log(1 - D(G(z)))
            = mean( softplus(lse_u) - lse_u ) + mean( softplus(lse_f) ),  lse = logsumexp(l)
    Returns (L_sup, L_unsup). The openai code weights the unsupervised term
    by 0.5 (its two halves are averaged); callers choose the weighting.
    """
    labels = tf.cast(labels, tf.int32)
    lse_labeled = tf.reduce_logsumexp(labeled_logits, axis=-1)
    picked = tf.gather(labeled_logits, labels, axis=-1, batch_dims=1)
    supervised = tf.reduce_mean(lse_labeled - picked)
    lse_unl = tf.reduce_logsumexp(unlabeled_logits, axis=-1)
    lse_fake = tf.reduce_logsumexp(fake_logits, axis=-1)
    unsupervised = tf.reduce_mean(tf.nn.softplus(lse_unl) - lse_unl) + tf.reduce_mean(tf.nn.softplus(lse_fake))
    return supervised, unsupervised


def k_plus_one_generator_loss(fake_logits):
    """-E_z log D(G(z)) for the K+1 discriminator (non-saturating): mean(softplus(lse) - lse)."""
    lse = tf.reduce_logsumexp(fake_logits, axis=-1)
    return tf.reduce_mean(tf.nn.softplus(lse) - lse)


@register
class HistoricalAveraging(keras.layers.Layer):
    """Running means of a player's parameters and the penalty || theta - mean of past theta ||^2.

    Salimans et al. 2016, section 3.3: each player's cost gets
    ``|| theta - (1/t) sum_{i=1..t} theta[i] ||^2``, where theta[i] is the
    value at past time i. Here the average is over the values *before* the
    current update (the penalty is 0 until one value is recorded), updated with
    ``avg_t = avg_{t-1} + (theta_t - avg_{t-1}) / t``. The openai repo does not
    implement this term (only an EMA for evaluation), so this follows the paper.

    Args:
        weight: multiplier of the penalty.

    Call arguments:
        inputs: the list of variables (e.g. `generator.trainable_variables`);
            returns ``weight * sum ||theta - avg||^2``. Call `record(variables)`
            after each optimizer step.
    """

    def __init__(self, weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.weight = weight

    def build(self, variable_shapes):
        self.averages = [
            self.add_weight(shape=tuple(shape), initializer="zeros", trainable=False, name=f"average_{i}",
                            aggregation="mean")
            for i, shape in enumerate(variable_shapes)
        ]
        self.count = self.add_weight(shape=(), initializer="zeros", trainable=False, name="count",
                                     aggregation="only_first_replica")

    def track(self, variables):
        """Create the running means for `variables` (call once, inside the strategy scope)."""
        self.build([tuple(v.shape) for v in variables])
        self.built = True

    def call(self, variables, training=None):
        if len(variables) != len(self.averages):
            raise ValueError(f"got {len(variables)} variables, tracking {len(self.averages)}")
        penalty = tf.add_n([tf.reduce_sum(tf.square(v - a)) for v, a in zip(variables, self.averages)])
        return self.weight * tf.where(self.count > 0, penalty, tf.zeros_like(penalty))

    def record(self, variables):
        """Fold the current values into the running means."""
        count = self.count + 1.0
        for v, a in zip(variables, self.averages):
            a.assign(a + (tf.cast(v, a.dtype) - a) / count)
        self.count.assign(count)

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}
