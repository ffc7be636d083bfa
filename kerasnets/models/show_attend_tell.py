"""Show, Attend and Tell: an LSTM caption decoder with soft attention over CNN annotations (Xu et al. 2015).

Xu, Ba, Kiros, Cho, Courville, Salakhutdinov, Zemel, Bengio. ICML 2015, arXiv:1502.03044.

Encoder: a CNN's last convolutional feature map `[H', W', D]` read as L = H' W'
annotation vectors `a_i` in R^D. The paper uses VGG (Oxford) without
fine-tuning: 224 x 224 images -> the 14 x 14 x 512 map of the 4th
convolution of block 5 before max pooling (L = 196, D = 512)
(`build_vgg19_encoder`). For CPU-sized runs `build_small_encoder` is a small
VGG-style conv net trained with the decoder (e.g. 32 x 32 -> 8 x 8 x 128).

Decoder, per step t (deterministic "soft" attention, Sec. 3.1.2 and 4.2):

    h_0 = f_init,h(mean_i a_i),  c_0 = f_init,c(mean_i a_i)       (one tanh layer each, as the authors' code)
    zhat_t, alpha_t = SoftAttention(a, h_{t-1})                    (alpha_t softmax over L; zhat = beta_t sum alpha a)
    h_t, c_t = LSTM([E y_{t-1}; zhat_t], h_{t-1}, c_t-1)
    p(y_t) = softmax(L_o tanh(E y_{t-1} + L_h h_t + L_z zhat_t))  (deep output, Eq. 7; the tanh and the dropout
                                                                     before L_o are the authors' code)

Training (teacher forcing: y_{t-1} is the ground-truth previous word) minimises
per caption

    -sum_t log p(y_t | a, y_<t) + lambda sum_i (1 - sum_t alpha_ti)^2      (doubly stochastic attention, Eq. 14)

with the sums over the caption's real steps (its words and `<end>`). When the
caption is shorter than L the penalty cannot reach 0; its gradient is the
same as for the target T/L used by some re-implementations (a constant shift
of dL/dalpha over i, which the softmax ignores), so it pushes the model to
spread attention over all locations over the course of a caption.

Decoding (`greedy_decode`, `beam_search`) is plain TF ops with a fixed number
of steps (`max_length` words + `<end>`), so it is traced into SavedModels.
`<pad>` and `<start>` are never generated. Beam search keeps `beam_width`
hypotheses ranked by total log-probability (optionally divided by their length);
finished hypotheses keep their score. Width 1 is greedy decoding.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasnets.data.captions import END_ID, PAD_ID, START_ID
from kerasnets.layers.soft_attention import SoftAttention

_NEG = -1e9  # "minus infinity" that keeps score arithmetic finite
VGG_MEAN_BGR = (103.939, 116.779, 123.68)


# ----------------------------------------------------------------------- encoders


def build_small_encoder(image_size: int, filters=(32, 64, 128), name: str = "encoder") -> keras.Model:
    """VGG-style CNN: per stage conv3x3 - BN - ReLU, 2x2 max pooling between stages (not after the last).

    Input float `[B, S, S, 3]` in [0, 1]; output the annotation map
    `[B, S / 2^(k-1), S / 2^(k-1), filters[-1]]` for `k = len(filters)` stages.
    """
    if not filters:
        raise ValueError("the encoder needs at least one stage (filters is empty)")
    reduction = 2 ** (len(filters) - 1)
    if image_size % reduction:
        raise ValueError(f"image_size {image_size} must be divisible by {reduction} for {len(filters)} stages")
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = inputs
    for i, f in enumerate(filters):
        x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"{name}_conv{i + 1}")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn{i + 1}")(x)
        x = keras.layers.ReLU(name=f"{name}_relu{i + 1}")(x)
        if i < len(filters) - 1:
            x = keras.layers.MaxPooling2D(2, name=f"{name}_pool{i + 1}")(x)
    return keras.Model(inputs, x, name=name)


def build_vgg19_encoder(image_size: int = 224, weights=None, name: str = "encoder") -> keras.Model:
    """The paper's encoder: VGG19 up to `block5_conv4` (224 -> 14 x 14 x 512, L = 196).

    `weights`: None (random) or a path to VGG19 no-top weights (no download
    here: this project runs offline). Expects Caffe-style inputs (BGR, mean
    subtracted); `ShowAttendTell(preprocessing="caffe")` does that in-graph.
    """
    base = keras.applications.VGG19(include_top=False, weights=weights, input_shape=(image_size, image_size, 3))
    return keras.Model(base.input, base.get_layer("block5_conv4").output, name=name)


# ------------------------------------------------------------------------ losses


def caption_nll(logits, targets, mask):
    """Per caption `-sum_t mask_t log p(y_t)`: logits `[B, T, V]`, targets `[B, T]`, mask `[B, T]` -> `[B]`."""
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(targets, tf.int32), logits=logits)
    return tf.reduce_sum(ce * tf.cast(mask, ce.dtype), axis=1)


def doubly_stochastic_penalty(alphas, mask):
    """Per caption `sum_i (1 - sum_t mask_t alpha_ti)^2`: alphas `[B, T, L]`, mask `[B, T]` -> `[B]`."""
    total = tf.reduce_sum(alphas * tf.cast(mask, alphas.dtype)[..., None], axis=1)  # [B, L]
    return tf.reduce_sum(tf.square(1.0 - total), axis=1)


# ------------------------------------------------------------------------- model


class ShowAttendTell(keras.Model):
    """CNN encoder + soft-attention LSTM decoder (see module doc).

    Args:
        tokens: the vocabulary (`CaptionVocabulary.tokens`; ids 0-3 `<pad>`, `<start>`, `<end>`, `<unk>`).
        encoder: Keras model, float images `[B, S, S, 3]` -> feature map `[B, H', W', D]`.
        image_size: S; inputs of other sizes are resized (bilinear) in the graph.
        embed_dim: word embedding size m (paper: 512).
        units: LSTM size n (paper: 1000 / 1800).
        attention_units: hidden size of the attention MLP.
        dropout: dropout rate before L_o (deep output) in training (authors: 0.5).
        use_gate: the gating scalar beta (Sec. 4.2.1).
        preprocessing: `"unit"` (x / 255) or `"caffe"` (VGG: BGR, mean subtracted).

    Call: `model((images, input_ids), training)` -> logits `[B, T, V]` (teacher forcing).
    """

    def __init__(self, tokens, encoder, *, image_size: int, embed_dim: int = 64, units: int = 256,
                 attention_units: int = 128, dropout: float = 0.0, use_gate: bool = True,
                 preprocessing: str = "unit", **kwargs):
        super().__init__(**kwargs)
        if preprocessing not in ("unit", "caffe"):
            raise ValueError(f"preprocessing must be 'unit' or 'caffe', got {preprocessing!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.tokens = list(tokens)
        self.vocabulary_size = len(self.tokens)
        self.image_size = image_size
        self.embed_dim, self.units, self.dropout = embed_dim, units, dropout
        self.preprocessing = preprocessing
        self.encoder = encoder
        _, gh, gw, d = encoder.output_shape
        self.grid_shape = (int(gh), int(gw))
        self.num_locations, self.annotation_dim = int(gh) * int(gw), int(d)
        self.embedding = keras.layers.Embedding(self.vocabulary_size, embed_dim, name="E")
        self.init_h = keras.layers.Dense(units, activation="tanh", name="f_init_h")
        self.init_c = keras.layers.Dense(units, activation="tanh", name="f_init_c")
        self.attention = SoftAttention(attention_units, use_gate=use_gate, name="attention")
        self.lstm = keras.layers.LSTMCell(units, name="lstm")
        self.out_hidden = keras.layers.Dense(embed_dim, name="L_h")
        self.out_context = keras.layers.Dense(embed_dim, name="L_z")
        self.out_logits = keras.layers.Dense(self.vocabulary_size, name="L_o")
        self.build()

    def build(self, input_shape=None):
        """Create every decoder variable now (the decoder's layers are called step by step, not in `call`)."""
        d, n, m = self.annotation_dim, self.units, self.embed_dim
        self.embedding.build((None,))
        self.init_h.build((None, d))
        self.init_c.build((None, d))
        self.attention.build([(None, self.num_locations, d), (None, n)])
        self.lstm.build((None, m + d))
        self.out_hidden.build((None, n))
        self.out_context.build((None, d))
        self.out_logits.build((None, m))
        self.built = True

    # --------------------------------------------------------------- encoder
    def preprocess(self, images):
        """uint8 (or float 0..255) images `[B, H, W, 3]`, any H, W -> encoder input `[B, S, S, 3]`."""
        x = tf.cast(images, tf.float32)
        if x.shape.rank != 4 or x.shape[-1] not in (3, None):
            raise ValueError(f"expected images [B, H, W, 3], got shape {x.shape}")
        s = self.image_size
        if x.shape[1] != s or x.shape[2] != s:
            x = tf.image.resize(x, [s, s], method="bilinear")
        if self.preprocessing == "unit":
            return x / 255.0
        return x[..., ::-1] - tf.constant(VGG_MEAN_BGR, tf.float32)

    def encode(self, images, training=False):
        """Annotation vectors `[B, L, D]`."""
        features = self.encoder(self.preprocess(images), training=training)
        return tf.reshape(features, [-1, self.num_locations, self.annotation_dim])

    def initial_state(self, annotations):
        mean = tf.reduce_mean(annotations, axis=1)
        return self.init_h(mean), self.init_c(mean)

    # --------------------------------------------------------------- decoder
    def step(self, prev_ids, h, c, annotations, projected, training=False, dropout_seed=None):
        """One decoder step: `(logits [B, V], h, c, alpha [B, L], beta [B, 1])`."""
        emb = self.embedding(prev_ids)
        zhat, alpha, beta = self.attention.attend(annotations, projected, h)
        h, (_, c) = self.lstm(tf.concat([emb, zhat], axis=-1), [h, c], training=training)
        deep = tf.tanh(emb + self.out_hidden(h) + self.out_context(zhat))
        if training and self.dropout > 0:
            if dropout_seed is None:
                raise ValueError("training with dropout needs dropout_seed (a [2] int32 stateless seed)")
            deep = tf.nn.experimental.stateless_dropout(deep, self.dropout, seed=dropout_seed)
        return self.out_logits(deep), h, c, alpha, beta

    def teacher_forcing(self, annotations, input_ids, training=False, dropout_seed=None):
        """Logits `[B, T, V]`, alphas `[B, T, L]`, betas `[B, T]` given the ground-truth previous words."""
        steps = input_ids.shape[1]
        if steps is None:
            raise ValueError("teacher forcing needs a static caption length (pad captions to max_length)")
        projected = self.attention.project(annotations)
        h, c = self.initial_state(annotations)
        logits, alphas, betas = [], [], []
        for t in range(steps):
            seed = None if dropout_seed is None else tf.random.experimental.stateless_fold_in(dropout_seed, t)
            out, h, c, alpha, beta = self.step(input_ids[:, t], h, c, annotations, projected, training, seed)
            logits.append(out)
            alphas.append(alpha)
            betas.append(beta[:, 0])
        return tf.stack(logits, 1), tf.stack(alphas, 1), tf.stack(betas, 1)

    def call(self, inputs, training=None):
        images, input_ids = inputs
        return self.teacher_forcing(self.encode(images, training=training), input_ids, training=training)[0]

    def _never_generated(self, log_probs):
        # <pad> and <start> are never produced by the decoder.
        banned = tf.one_hot([PAD_ID, START_ID], self.vocabulary_size, dtype=log_probs.dtype)
        return log_probs + _NEG * tf.reduce_sum(banned, axis=0)

    def greedy_decode(self, images, max_length: int):
        """Greedy decoding: `(ids [B, max_length + 1], alphas [B, max_length + 1, L])`, `<pad>` after `<end>`."""
        annotations = self.encode(images)
        projected = self.attention.project(annotations)
        h, c = self.initial_state(annotations)
        prev = tf.fill([tf.shape(annotations)[0]], START_ID)
        finished = tf.zeros_like(prev, tf.bool)
        ids, alphas = [], []
        for _ in range(max_length + 1):
            logits, h, c, alpha, _ = self.step(prev, h, c, annotations, projected)
            token = tf.argmax(self._never_generated(tf.nn.log_softmax(logits)), axis=-1, output_type=tf.int32)
            token = tf.where(finished, PAD_ID, token)
            alphas.append(tf.where(finished[:, None], tf.zeros_like(alpha), alpha))
            ids.append(token)
            finished = finished | (token == END_ID)
            prev = token
        return tf.stack(ids, 1), tf.stack(alphas, 1)

    def beam_search(self, images, max_length: int, beam_width: int = 3, length_normalize: bool = False):
        """Beam search: `(ids [B, T], alphas [B, T, L], log_prob [B])` of the best hypothesis, T = max_length + 1.

        `length_normalize`: rank the final hypotheses by log-probability per
        token (`<end>` included) instead of the total.
        """
        if beam_width < 1:
            raise ValueError(f"beam_width must be >= 1, got {beam_width}")
        k, v = beam_width, self.vocabulary_size
        annotations = self.encode(images)
        batch = tf.shape(annotations)[0]
        projected = self.attention.project(annotations)
        h, c = self.initial_state(annotations)
        tile = lambda x: tf.repeat(x, k, axis=0)  # noqa: E731  [B, ...] -> [B * K, ...], beams of one image adjacent
        annotations, projected, h, c = tile(annotations), tile(projected), tile(h), tile(c)
        # Only beam 0 is alive at the start (all beams are the same empty caption).
        scores = tf.tile(tf.concat([[0.0], tf.fill([k - 1], _NEG)], 0)[None], [batch, 1])  # [B, K]
        finished = tf.zeros([batch, k], tf.bool)
        ids = tf.zeros([batch, k, 0], tf.int32)
        alphas = tf.zeros([batch, k, 0, self.num_locations])
        prev = tf.fill([batch * k], START_ID)
        # A finished hypothesis continues only with <pad>, at no cost.
        pad_only = _NEG * (1.0 - tf.one_hot(PAD_ID, v))
        for _ in range(max_length + 1):
            logits, h, c, alpha, _ = self.step(prev, h, c, annotations, projected)
            log_probs = tf.reshape(self._never_generated(tf.nn.log_softmax(logits)), [batch, k, v])
            log_probs = tf.where(finished[..., None], pad_only, log_probs)
            total = tf.reshape(scores[..., None] + log_probs, [batch, k * v])
            scores, best = tf.math.top_k(total, k)  # [B, K]
            beam, token = best // v, best % v
            flat = tf.reshape(beam + tf.range(batch)[:, None] * k, [-1])  # rows of [B * K] tensors
            h, c = tf.gather(h, flat), tf.gather(c, flat)
            alpha = tf.where(tf.reshape(finished, [-1, 1]), tf.zeros_like(alpha), alpha)  # before re-ordering
            alpha = tf.gather(tf.reshape(alpha, [batch, k, -1]), beam, batch_dims=1)
            finished = tf.gather(finished, beam, batch_dims=1)
            ids = tf.concat([tf.gather(ids, beam, batch_dims=1), token[..., None]], axis=2)
            alphas = tf.concat([tf.gather(alphas, beam, batch_dims=1), alpha[:, :, None]], axis=2)
            finished = finished | (token == END_ID)
            prev = tf.reshape(token, [-1])
        final = scores
        if length_normalize:
            lengths = tf.reduce_sum(tf.cast(ids != PAD_ID, tf.float32), axis=2)
            final = scores / tf.maximum(lengths, 1.0)
        pick = tf.argmax(final, axis=1, output_type=tf.int32)
        return (tf.gather(ids, pick, batch_dims=1), tf.gather(alphas, pick, batch_dims=1),
                tf.gather(scores, pick, batch_dims=1))
