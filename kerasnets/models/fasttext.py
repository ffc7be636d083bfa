"""fastText text classifier (Joulin, Grave, Bojanowski, Mikolov 2017, "Bag of Tricks for Efficient Text
Classification", EACL, arXiv:1607.01759).

Raw strings in, class log-probabilities out, everything in the graph:

    tokens  = tokenize(normalize(text)) + ["</s>"]                     (kerasnets.ops.text)
    ids     = {vocab id of each in-vocabulary token} U {V + 1 + bucket(n-gram) for word 2..n-grams}
    h       = (1 / |ids|) sum_{i in ids} E[i]                          (E: (V + 1 + B) x dim, U(-1/dim, 1/dim))
    p(y|h)  = softmax(W h)  (W zeros, no bias)   or   hierarchical softmax over a Huffman tree

As fastText, out-of-vocabulary words get no embedding row but still take part
in the n-grams (their hashes do), and n-gram buckets are fastText's FNV-1a
hashes (`word_ngram_buckets`). Row 0 of `E` is the unused OOV row of the
`StringLookup`.
"""

from __future__ import annotations

import collections

import keras
import numpy as np
import tensorflow as tf

from kerasnets.layers.hierarchical_softmax import HierarchicalSoftmax
from kerasnets.ops.text import tokenize, word_ngram_buckets


def build_vocabulary(texts, min_count: int = 1, batch_size: int = 4096) -> list[str]:
    """Tokens of `texts` (same normalization as the model) seen >= `min_count` times, most frequent first."""
    counts: collections.Counter = collections.Counter()
    texts = np.asarray(texts, dtype=object)
    for i in range(0, len(texts), batch_size):
        tokens = tokenize(tf.constant(list(texts[i : i + batch_size]), tf.string)).flat_values.numpy()
        counts.update(tokens)
    vocab = [w.decode("utf-8", "replace") for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
             if c >= min_count]
    if not vocab:
        raise ValueError("empty vocabulary: no token reaches min_count")
    return vocab


def string_signature(model):
    """A `serving_default`-style tf.function of `model` on a `tf.string [N]` input."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serving_default(text):
        return model(text)

    return serving_default


class FastTextClassifier(keras.Model):
    """Raw text `[N]` -> class log-probabilities `[N, C]` (see module doc).

    Args:
        vocabulary: word list (from `build_vocabulary` on the training corpus).
        num_classes: number of labels.
        dim: embedding size (paper: 10).
        buckets: hash buckets for word n-grams (paper: 10M; fastText default 2M).
        word_ngrams: longest word n-gram (1 = bag of words, paper: 2).
        loss: `"softmax"` or `"hs"` (hierarchical softmax over a Huffman tree of `class_counts`).
        class_counts: training class frequencies (needed for `"hs"`).
        seed: initializer seed.
    """

    def __init__(self, vocabulary, num_classes, dim=10, buckets=2**20, word_ngrams=2, loss="softmax",
                 class_counts=None, seed=0, **kwargs):
        super().__init__(**kwargs)
        if loss not in ("softmax", "hs"):
            raise ValueError(f"loss must be 'softmax' or 'hs', got {loss!r}")
        if word_ngrams < 1:
            raise ValueError(f"word_ngrams must be >= 1, got {word_ngrams}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.vocabulary = list(vocabulary)
        self.num_classes = int(num_classes)
        self.dim, self.buckets, self.word_ngrams, self.loss_type = int(dim), int(buckets), int(word_ngrams), loss
        self.lookup = keras.layers.StringLookup(vocabulary=self.vocabulary, num_oov_indices=1, name="vocabulary")
        rows = len(self.vocabulary) + 1 + (self.buckets if self.word_ngrams > 1 else 0)
        self.embeddings = self.add_weight(
            name="input_matrix", shape=(rows, self.dim),
            initializer=keras.initializers.RandomUniform(-1.0 / self.dim, 1.0 / self.dim, seed=seed),
        )
        if loss == "softmax":
            self.output_layer = keras.layers.Dense(self.num_classes, use_bias=False, kernel_initializer="zeros",
                                                   name="output_matrix")
        else:
            if class_counts is None or len(class_counts) != self.num_classes:
                raise ValueError("loss='hs' needs class_counts with one count per class")
            self.output_layer = HierarchicalSoftmax(class_counts, name="hierarchical_softmax")
        self.output_layer.build((None, self.dim))

    @property
    def _default_save_signature(self):
        # Keras derives a subclassed model's default SavedModel signature from its float input
        # dtype; this model's input is text.
        return string_signature(self)

    def feature_ids(self, text):
        """Ragged int64 `[N, None]` rows of the input matrix used by each text."""
        tokens = tokenize(text)
        words = tf.ragged.map_flat_values(lambda t: tf.cast(self.lookup(t), tf.int64), tokens)
        words = tf.ragged.boolean_mask(words, words > 0)  # OOV words have no row
        if self.word_ngrams < 2:
            return words
        grams = word_ngram_buckets(tokens, self.word_ngrams, self.buckets) + (len(self.vocabulary) + 1)
        return tf.concat([words, grams], axis=1)

    def document_vectors(self, text):
        """Average of the input-matrix rows of each text `[N, dim]` (zeros for a text with no features)."""
        ids = self.feature_ids(text)
        rows = tf.ragged.map_flat_values(tf.gather, self.embeddings, ids)
        total = tf.reduce_sum(rows, axis=1)
        count = tf.cast(tf.maximum(ids.row_lengths(), 1), total.dtype)
        return total / count[:, None]

    def call(self, text, training=False):
        h = self.document_vectors(text)
        if self.loss_type == "softmax":
            return tf.nn.log_softmax(self.output_layer(h), axis=-1)
        return self.output_layer(h)

    def label_log_prob(self, text, labels):
        """log p(label | text) `[N]`; with `hs` only the label's path is evaluated (training)."""
        h = self.document_vectors(text)
        labels = tf.cast(labels, tf.int32)
        if self.loss_type == "softmax":
            logits = self.output_layer(h)
            return -tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        return self.output_layer.label_log_prob(h, labels)
