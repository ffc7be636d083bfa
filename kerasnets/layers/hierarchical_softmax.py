"""Hierarchical softmax over a Huffman tree of the classes (fastText's `-loss hs`)."""

from __future__ import annotations

import heapq

import keras
import numpy as np
import tensorflow as tf

from kerasnets.saving import register


def huffman_codes(counts):
    """Huffman tree over class counts: `(paths, codes)`, one list per class.

    Construction: every class is a leaf weighted by its count; the two lightest
    nodes (ties: the one created first) are merged repeatedly into a new internal
    node, the lighter child taking bit 0 and the other bit 1, until one root is
    left. Internal nodes are numbered 0 .. C-2 in creation order (the root is
    C-2). `paths[c]` lists the internal nodes from the root down to class c's
    parent and `codes[c]` the bit taken at each. Frequent classes end up near
    the root (short codes), so the expected code length is minimal. One class
    gives empty paths.
    """
    counts = [float(c) for c in counts]
    if not counts:
        raise ValueError("huffman_codes needs at least one class")
    if any(c < 0 for c in counts):
        raise ValueError("class counts must be non-negative")
    n = len(counts)
    heap = [(c, i, i) for i, c in enumerate(counts)]  # (weight, creation order, node id); leaves are 0..n-1
    heapq.heapify(heap)
    parent, bit = {}, {}
    next_id = n
    while len(heap) > 1:
        w0, _, a = heapq.heappop(heap)
        w1, _, b = heapq.heappop(heap)
        parent[a], bit[a] = next_id, 0
        parent[b], bit[b] = next_id, 1
        heapq.heappush(heap, (w0 + w1, next_id, next_id))
        next_id += 1
    paths, codes = [], []
    for leaf in range(n):
        path, code, node = [], [], leaf
        while node in parent:
            path.append(parent[node] - n)
            code.append(bit[node])
            node = parent[node]
        paths.append(path[::-1])
        codes.append(code[::-1])
    return paths, codes


@register
class HierarchicalSoftmax(keras.layers.Layer):
    """Class log-probabilities from a binary tree of logistic decisions (Joulin et al. 2017, section 2.1).

    Each internal node n of a Huffman tree over the class frequencies has a
    vector v_n; for a hidden vector h the probability of class c is the product
    over the nodes on its root-to-leaf path of

        sigma(v_n . h)       if the path goes to child 1 at n,
        1 - sigma(v_n . h)   if it goes to child 0,

    which sums to 1 over the classes by construction. Training touches only
    the depth(c) ~ log2(C) nodes on the label's path (`label_log_prob`); the
    node vectors start at zero, as fastText's output matrix.

    Args:
        class_counts: training frequency of each class (list of numbers).

    Call arguments:
        inputs: hidden vectors `[N, D]`.

    Returns:
        log-probabilities of every class `[N, C]`.

    Reference:
        Joulin, Grave, Bojanowski, Mikolov 2017. Bag of Tricks for Efficient Text
        Classification. EACL. (Hierarchical softmax: Goodman 2001; Mikolov et al. 2013.)
    """

    def __init__(self, class_counts, **kwargs):
        super().__init__(**kwargs)
        self.class_counts = [float(c) for c in class_counts]
        if len(self.class_counts) < 2:
            raise ValueError("HierarchicalSoftmax needs at least 2 classes")
        paths, codes = huffman_codes(self.class_counts)
        depth = max(len(p) for p in paths)
        n = len(paths)
        self._paths = np.zeros((n, depth), "int32")
        self._signs = np.zeros((n, depth), "float32")  # +1 for bit 1, -1 for bit 0, 0 = padding
        for c, (p, b) in enumerate(zip(paths, codes)):
            self._paths[c, : len(p)] = p
            self._signs[c, : len(p)] = [1.0 if x else -1.0 for x in b]
        self.code_lengths = [len(p) for p in paths]

    @property
    def num_classes(self) -> int:
        return len(self.class_counts)

    def build(self, input_shape):
        self.node_vectors = self.add_weight(
            name="node_vectors", shape=(self.num_classes - 1, int(input_shape[-1])), initializer="zeros"
        )

    def call(self, inputs, training=None):
        scores = tf.matmul(inputs, self.node_vectors, transpose_b=True)  # [N, C-1]
        per_node = tf.gather(scores, self._paths, axis=1)  # [N, C, depth]
        # log sigma(sign * s); padding entries (sign 0) contribute 0.
        terms = tf.math.log_sigmoid(self._signs * per_node) * tf.abs(self._signs)
        return tf.reduce_sum(terms, axis=-1)

    def label_log_prob(self, inputs, labels):
        """log p(label | h) `[N]` touching only the nodes on each label's path."""
        labels = tf.cast(labels, tf.int32)
        nodes = tf.gather(self._paths, labels)  # [N, depth]
        signs = tf.gather(self._signs, labels)
        vectors = tf.gather(self.node_vectors, nodes)  # [N, depth, D]
        scores = tf.einsum("nd,nkd->nk", inputs, vectors)
        return tf.reduce_sum(tf.math.log_sigmoid(signs * scores) * tf.abs(signs), axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        return {**super().get_config(), "class_counts": self.class_counts}
