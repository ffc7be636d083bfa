"""GuessWhat?! networks (de Vries et al., CVPR 2017) and the self-play loop of Strub et al. (IJCAI 2017).

Raw strings in, everything tokenized in-graph (`DialogueVocabulary`): the
normalization of `kerasnets.ops.text.normalize_text` (lowercase, `? . , ' ( ) !`
as their own tokens), whitespace split, a `StringLookup` with id 0 = padding,
1 = `<unk>`, then the special tokens `SPECIAL_TOKENS` and the words.

* `Oracle` (paper section 5.1, best model): question LSTM final state,
  target category embedding and the 8-d spatial feature of its box,
  concatenated -> MLP (ReLU) -> 3 logits (yes, no, n/a).
* `Guesser` (section 5.2, "LSTM"): dialogue LSTM final state `h`; each object
  `o_i = MLP([category embedding; spatial])` (two ReLU layers);
  `p(o_i | dialogue) = softmax_i(o_i . h)` over the real objects only (padded
  objects get probability exactly 0).
* `QuestionGenerator` (section 5.3): an LSTM over the dialogue token stream
  `<start> q_1 ? <a_1> q_2 ? <a_2> ... <stop_dialogue>`, each input word
  embedding concatenated with a scene embedding, softmax over the vocabulary;
  trained by teacher forcing with the loss on question tokens only (the
  answers come from the oracle). The paper's scene embedding is a linear map
  of the image's VGG fc8 features; images are not used here, so the scene
  vector is built from the object annotations (`scene_features`: the category
  histogram and the mean box centre per category) -- `use_scene=False`
  conditions on the dialogue alone.
* `play_games`: Strub et al.'s loop. The generator asks up to `max_questions`
  questions of up to `max_tokens` tokens (a question ends at `?`; the game
  ends early if it emits `<stop_dialogue>`), the oracle answers each about the
  target, the guesser picks an object; reward 1 if it is the target, else 0.

Spatial features (GuessWhat's `get_spatial_feat`), from a COCO box
`[x, y_top, w, h]` in an image of size `W x H`, with `y` measured from the
bottom (`y_upper = H - y_top`, `y_lower = y_upper - h`):

    [x_left, y_lower, x_right, y_upper, x_center, y_center] -> 2 * v / size - 1,   [w, h] -> 2 * v / size
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from kerasnets.data.guesswhat import ANSWER_TOKENS
from kerasnets.ops.text import normalize_text

START, STOP_DIALOGUE, QUESTION_MARK = "<start>", "<stop_dialogue>", "?"
SPECIAL_TOKENS = (START, STOP_DIALOGUE, *ANSWER_TOKENS, QUESTION_MARK)
PAD_ID, UNK_ID = 0, 1
NEG = -1e9


def spatial_features(boxes, image_size):
    """GuessWhat's 8-d spatial feature (module doc) of COCO boxes `[..., 4]` in images `[..., 2]` (W, H)."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    size = tf.convert_to_tensor(image_size, tf.float32)
    width, height = size[..., 0:1], size[..., 1:2]
    x, y_top, w, h = tf.unstack(boxes, axis=-1)
    x, y_top, w, h = x[..., None], y_top[..., None], w[..., None], h[..., None]
    y_upper = height - y_top
    y_lower = y_upper - h
    x_left, x_right = x, x + w
    x_center, y_center = x + 0.5 * w, y_lower + 0.5 * h
    scale_x = lambda v: 2.0 * v / width - 1.0  # noqa: E731
    scale_y = lambda v: 2.0 * v / height - 1.0  # noqa: E731
    return tf.concat([scale_x(x_left), scale_y(y_lower), scale_x(x_right), scale_y(y_upper),
                      scale_x(x_center), scale_y(y_center), 2.0 * w / width, 2.0 * h / height], axis=-1)


def scene_features(categories, spatial, object_mask, num_categories: int):
    """`[B, 3 C]`: fraction of objects per category, and per category the mean box centre (x, y)."""
    mask = tf.cast(object_mask, tf.float32)
    onehot = tf.one_hot(categories, num_categories) * mask[..., None]  # [B, O, C]
    count = tf.reduce_sum(onehot, axis=1)
    total = tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1.0)
    centre = tf.einsum("boc,bod->bcd", onehot, spatial[..., 4:6]) / tf.maximum(count, 1.0)[..., None]
    return tf.concat([count / total, tf.reshape(centre, [-1, 2 * num_categories])], axis=-1)


class DialogueVocabulary(keras.layers.Layer):
    """Raw strings -> token ids (`[..., T]`, 0-padded) and ids -> strings, in-graph.

    Args:
        words: the vocabulary's words (special tokens are added in front, see module doc).
    """

    def __init__(self, words, **kwargs):
        super().__init__(**kwargs)
        words = [w for w in words if w not in SPECIAL_TOKENS and w not in ("", "<unk>")]
        self.words = list(SPECIAL_TOKENS) + words
        self.lookup = keras.layers.StringLookup(vocabulary=self.words, mask_token="", oov_token="<unk>",
                                                num_oov_indices=1, name="lookup")
        self.table = ["", "<unk>"] + self.words

    @property
    def size(self) -> int:
        return len(self.table)

    def id(self, token: str) -> int:
        return self.table.index(token)

    def tokenize(self, text, max_length=None):
        """`[N]` strings -> int32 `[N, T]` ids (0-padded), truncated to `max_length` tokens."""
        tokens = tf.strings.split(normalize_text(text))
        if max_length is not None:
            tokens = tokens[:, :max_length]
        ids = tf.ragged.map_flat_values(lambda t: tf.cast(self.lookup(t), tf.int32), tokens)
        return _at_least_one_column(ids.to_tensor(default_value=PAD_ID))

    def detokenize(self, ids):
        """int `[N, T]` ids -> `[N]` strings (tokens joined by spaces, padding dropped)."""
        ids = tf.cast(ids, tf.int32)
        words = tf.gather(tf.constant(self.table), ids)
        words = tf.ragged.boolean_mask(words, ids != PAD_ID)
        return tf.strings.reduce_join(words, axis=-1, separator=" ")

    def call(self, text):
        return self.tokenize(text)

    def get_config(self):
        return {**super().get_config(), "words": self.words}


def build_vocabulary(texts, min_count: int = 1) -> list[str]:
    """Words of `texts` (model normalization) seen >= `min_count` times, most frequent first."""
    import collections

    counts: collections.Counter = collections.Counter()
    texts = [t for t in np.asarray(texts, dtype=object).ravel().tolist() if t]
    for i in range(0, len(texts), 8192):
        counts.update(tf.strings.split(normalize_text(tf.constant(texts[i:i + 8192]))).flat_values.numpy())
    words = [w.decode("utf-8") for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_count]
    return [w for w in words if w not in SPECIAL_TOKENS]


def _at_least_one_column(ids):
    """Pad `[B, 0]` to `[B, 1]` (an all-empty batch still runs through the LSTMs)."""
    return tf.pad(ids, [[0, 0], [0, tf.maximum(0, 1 - tf.shape(ids)[1])]])


class Oracle(keras.Model):
    """Question string + target category + spatial feature -> logits over (yes, no, n/a).

    Args:
        words: vocabulary words; num_categories: category embedding rows (COCO: 91, row 0 unknown).
        word_dim, lstm_units, category_dim, hidden_units: sizes (paper: 300, 512, 512, 512).
    """

    def __init__(self, words, num_categories, word_dim=300, lstm_units=512, category_dim=512, hidden_units=512,
                 **kwargs):
        super().__init__(**kwargs)
        self.vocab = DialogueVocabulary(words, name="vocabulary")
        self.num_categories = int(num_categories)
        self.word_embedding = keras.layers.Embedding(self.vocab.size, word_dim, mask_zero=True, name="words")
        self.lstm = keras.layers.LSTM(lstm_units, name="question_lstm")
        self.category_embedding = keras.layers.Embedding(self.num_categories, category_dim, name="category")
        self.hidden = keras.layers.Dense(hidden_units, activation="relu", name="hidden")
        self.out = keras.layers.Dense(3, name="answer")
        self.build()

    def build(self, input_shape=None):
        self.word_embedding.build((None, None))
        self.lstm.build((None, None, self.word_embedding.output_dim))
        self.category_embedding.build((None,))
        self.hidden.build((None, self.lstm.units + self.category_embedding.output_dim + 8))
        self.out.build((None, self.hidden.units))
        self.built = True

    def logits_from_ids(self, question_ids, category, spatial, training=False):
        h = self.lstm(self.word_embedding(question_ids), mask=question_ids != PAD_ID, training=training)
        feats = tf.concat([h, self.category_embedding(category), tf.cast(spatial, h.dtype)], axis=-1)
        return self.out(self.hidden(feats))

    def call(self, inputs, training=False):
        """`inputs`: dict with `question` `[N]` strings, `category` `[N]` int, `spatial` `[N, 8]`."""
        return self.logits_from_ids(self.vocab.tokenize(inputs["question"]), inputs["category"], inputs["spatial"],
                                    training=training)


class Guesser(keras.Model):
    """Dialogue string + objects (category, spatial, mask) -> log-probabilities over the objects.

    Args:
        words: vocabulary words; num_categories: category embedding rows.
        word_dim, lstm_units, category_dim, mlp_units: sizes (paper: 512, 512, 256, 512).
    """

    def __init__(self, words, num_categories, word_dim=512, lstm_units=512, category_dim=256, mlp_units=512,
                 **kwargs):
        super().__init__(**kwargs)
        self.vocab = DialogueVocabulary(words, name="vocabulary")
        self.num_categories = int(num_categories)
        self.word_embedding = keras.layers.Embedding(self.vocab.size, word_dim, mask_zero=True, name="words")
        self.lstm = keras.layers.LSTM(lstm_units, name="dialogue_lstm")
        self.category_embedding = keras.layers.Embedding(self.num_categories, category_dim, name="category")
        self.mlp1 = keras.layers.Dense(mlp_units, activation="relu", name="object_mlp1")
        self.mlp2 = keras.layers.Dense(lstm_units, activation="relu", name="object_mlp2")
        self.build()

    def build(self, input_shape=None):
        self.word_embedding.build((None, None))
        self.lstm.build((None, None, self.word_embedding.output_dim))
        self.category_embedding.build((None, None))
        self.mlp1.build((None, None, self.category_embedding.output_dim + 8))
        self.mlp2.build((None, None, self.mlp1.units))
        self.built = True

    def object_embeddings(self, categories, spatial):
        x = tf.concat([self.category_embedding(categories), tf.cast(spatial, tf.float32)], axis=-1)
        return self.mlp2(self.mlp1(x))

    def log_probs_from_ids(self, dialogue_ids, categories, spatial, object_mask, training=False):
        """Masked log-softmax `[B, O]` of `o_i . h`; padded objects get log p = -1e9 (p = 0)."""
        h = self.lstm(self.word_embedding(dialogue_ids), mask=dialogue_ids != PAD_ID, training=training)
        scores = tf.einsum("boh,bh->bo", self.object_embeddings(categories, spatial), h)
        scores = tf.where(tf.cast(object_mask, tf.bool), scores, NEG)
        return tf.nn.log_softmax(scores, axis=-1)

    def call(self, inputs, training=False):
        """`inputs`: dict with `dialogue` `[B]` strings, `categories` `[B, O]`, `spatial` `[B, O, 8]`,
        `object_mask` `[B, O]` bool."""
        return self.log_probs_from_ids(self.vocab.tokenize(inputs["dialogue"]), inputs["categories"],
                                       inputs["spatial"], inputs["object_mask"], training=training)


class QuestionGenerator(keras.Model):
    """LSTM language model over the dialogue token stream, conditioned on a scene embedding (module doc).

    Args:
        words: vocabulary words; num_categories: for `scene_features`.
        word_dim, lstm_units, scene_dim: sizes (paper: 512, 1024, 512 for the fc8 embedding).
        use_scene: concatenate the scene embedding to every input word.
    """

    def __init__(self, words, num_categories, word_dim=512, lstm_units=1024, scene_dim=512, use_scene=True,
                 **kwargs):
        super().__init__(**kwargs)
        self.vocab = DialogueVocabulary(words, name="vocabulary")
        self.num_categories = int(num_categories)
        self.use_scene = bool(use_scene)
        self.units = int(lstm_units)
        self.word_embedding = keras.layers.Embedding(self.vocab.size, word_dim, mask_zero=True, name="words")
        self.scene = keras.layers.Dense(scene_dim, name="scene_embedding") if use_scene else None
        self.lstm = keras.layers.LSTM(lstm_units, return_sequences=True, name="decoder_lstm")
        self.out = keras.layers.Dense(self.vocab.size, name="word_logits")
        # Tokens never generated: padding, <unk>, <start> and the answers (they come from the oracle).
        banned = [PAD_ID, UNK_ID, self.vocab.id(START)] + [self.vocab.id(a) for a in ANSWER_TOKENS]
        self._banned = np.zeros(self.vocab.size, np.float32)
        self._banned[banned] = NEG
        self.start_id = self.vocab.id(START)
        self.stop_id = self.vocab.id(STOP_DIALOGUE)
        self.qmark_id = self.vocab.id(QUESTION_MARK)
        self.answer_ids = [self.vocab.id(a) for a in ANSWER_TOKENS]
        self.build()

    def build(self, input_shape=None):
        self.word_embedding.build((None, None))
        in_dim = self.word_embedding.output_dim
        if self.scene is not None:
            self.scene.build((None, 3 * self.num_categories))
            in_dim += self.scene.units
        self.lstm.build((None, None, in_dim))
        self.out.build((None, None, self.units))
        self.built = True

    # -- inputs
    def scene_embedding(self, categories, spatial, object_mask):
        if not self.use_scene:
            return None
        return self.scene(scene_features(categories, spatial, object_mask, self.num_categories))

    def _inputs(self, ids, scene):
        x = self.word_embedding(ids)
        if scene is not None:
            x = tf.concat([x, tf.broadcast_to(scene[:, None, :], [tf.shape(x)[0], tf.shape(x)[1],
                                                                  scene.shape[-1]])], axis=-1)
        return x

    def word_logits(self, hidden):
        return self.out(hidden) + self._banned

    def sequence_ids(self, dialogue):
        """Teacher-forcing stream `<start> dialogue tokens <stop_dialogue>` `[B, T]` of dialogue strings."""
        ids = self.vocab.tokenize(dialogue)
        ragged = tf.RaggedTensor.from_tensor(ids, padding=PAD_ID)
        n = ragged.nrows()
        start = tf.fill([n, 1], self.start_id)
        stop = tf.fill([n, 1], self.stop_id)
        return tf.concat([start, ragged, stop], axis=1).to_tensor(default_value=PAD_ID)

    def loss_mask(self, targets):
        """1 for generated tokens (words, `?`, `<stop_dialogue>`), 0 for answers and padding."""
        mask = targets != PAD_ID
        for a in self.answer_ids:
            mask = mask & (targets != a)
        return tf.cast(mask, tf.float32)

    def teacher_forced(self, ids, scene, training=False):
        """Inputs `ids[:, :-1]`: returns (logits `[B, T-1, V]`, LSTM outputs `[B, T-1, H]`)."""
        inputs = ids[:, :-1]
        hidden = self.lstm(self._inputs(inputs, scene), mask=inputs != PAD_ID, training=training)
        return self.word_logits(hidden), hidden

    def call(self, inputs, training=False):
        """Teacher-forced next-token logits; `inputs` as `Guesser.call`."""
        ids = self.sequence_ids(inputs["dialogue"])
        scene = self.scene_embedding(inputs["categories"], inputs["spatial"], inputs["object_mask"])
        logits, _ = self.teacher_forced(ids, scene, training)
        return logits

    # -- step decoding (shares the LSTM cell's weights)
    def zero_state(self, batch):
        z = tf.zeros([batch, self.units])
        return [z, z]

    def step(self, token, state, scene):
        x = self.word_embedding(token)
        if scene is not None:
            x = tf.concat([x, scene], axis=-1)
        h, new_state = self.lstm.cell(x, state)
        return h, new_state


def sequence_log_probs(logits, targets):
    """log p(target_t) `[B, T]` under `logits` `[B, T, V]`."""
    return -tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(targets, tf.int32), logits=logits)


def _pack(ids, keep):
    """Move the kept entries of each row to the front (order kept), 0-pad: `[B, T]` -> `[B, T']`."""
    return tf.ragged.boolean_mask(ids, keep).to_tensor(default_value=0)


def _generate_question(qgen, prev, state, active, scene, max_tokens, greedy, seed, salt):
    """Decode one question per game from `prev` (the last fed token) and LSTM `state`.

    Returns `(tokens [B, L], last token, state after the last generated token, stopped [B])`.
    Games with `active` False generate nothing (0s). A question ends at `?` or
    `<stop_dialogue>` (then `stopped`), or after `max_tokens` tokens.
    """
    batch = tf.shape(prev)[0]

    def body(t, inp, st, act, stopped, tokens):
        h, new_st = qgen.step(inp, st, scene)
        logits = qgen.word_logits(h)
        if greedy:
            w = tf.argmax(logits, axis=-1, output_type=tf.int32)
        else:
            step_seed = tf.random.experimental.stateless_fold_in(seed, salt * 1000 + t)
            w = tf.cast(tf.random.stateless_categorical(logits, 1, step_seed)[:, 0], tf.int32)
        st = [tf.where(act[:, None], n, o) for n, o in zip(new_st, st)]
        w = tf.where(act, w, PAD_ID)
        tokens = tokens + w[:, None] * tf.one_hot(t, max_tokens, dtype=tf.int32)[None, :]
        stopped = stopped | (act & (w == qgen.stop_id))
        act = act & (w != qgen.qmark_id) & (w != qgen.stop_id)
        return t + 1, tf.where(w == PAD_ID, inp, w), st, act, stopped, tokens

    tokens = tf.zeros([batch, max_tokens], tf.int32)
    _, last, state, _, stopped, tokens = tf.while_loop(
        lambda t, inp, st, act, *_: (t < max_tokens) & tf.reduce_any(act), body,
        (tf.constant(0), prev, state, active, tf.zeros([batch], tf.bool), tokens))
    # Steps skipped once every question has ended stay padding.
    return tokens, last, state, stopped


def encode_prefix(qgen, ids, scene):
    """LSTM state after reading `ids` `[B, T]` (0 = padding, skipped) step by step."""
    batch = tf.shape(ids)[0]

    def body(t, st):
        tok = ids[:, t]
        _, new_st = qgen.step(tok, st, scene)
        keep = (tok != PAD_ID)[:, None]
        return t + 1, [tf.where(keep, n, o) for n, o in zip(new_st, st)]

    _, state = tf.while_loop(lambda t, _: t < tf.shape(ids)[1], body, (tf.constant(0), qgen.zero_state(batch)))
    return state


def next_question(qgen, dialogue, categories, spatial, object_mask, max_tokens=12, greedy=True, seed=None):
    """The generator's next question (`[B]` strings) after dialogue strings `dialogue` `[B]` (may be empty)."""
    scene = qgen.scene_embedding(tf.cast(categories, tf.int32), tf.cast(spatial, tf.float32), object_mask)
    ids = qgen.vocab.tokenize(dialogue)
    ragged = tf.RaggedTensor.from_tensor(ids, padding=PAD_ID)
    stream = tf.concat([tf.fill([ragged.nrows(), 1], qgen.start_id), ragged], axis=1)
    lengths = stream.row_lengths()
    last = tf.gather(stream.flat_values, stream.row_limits() - 1)
    prefix = tf.ragged.boolean_mask(stream, tf.ragged.range(lengths) < (lengths - 1)[:, None])
    state = encode_prefix(qgen, prefix.to_tensor(default_value=PAD_ID), scene)
    seed = tf.constant([0, 0], tf.int32) if seed is None else tf.cast(seed, tf.int32)
    batch = tf.shape(last)[0]
    tokens, _, _, _ = _generate_question(qgen, last, state, tf.ones([batch], tf.bool), scene, max_tokens,
                                         greedy, seed, 0)
    return qgen.vocab.detokenize(tokens)


def play_games(qgen, oracle, guesser, categories, spatial, object_mask, target, *, max_questions=5,
               max_tokens=12, greedy=True, seed=None):
    """Self-play of a batch of games (Strub et al. 2017). Returns a dict of tensors:

    * `dialogue` `[B, T]`: the generator's token stream `<start> q_1 ? <a_1> ... [<stop_dialogue>]`, 0-padded;
    * `generated` `[B, T]` float: 1 where the generator chose the token (its actions), else 0;
    * `guesser_ids` `[B, T']`: the answered questions and answers the guesser reads;
    * `guess` `[B]`, `success` `[B]` float (reward: 1 if the guess is the target), `num_questions` `[B]`.

    A question cut by `<stop_dialogue>` is not answered and not shown to the guesser (its tokens stay
    in `dialogue` as actions). `greedy=False` samples with `tf.random.stateless_categorical` from
    `seed` (`[2]` int).
    """
    categories = tf.cast(categories, tf.int32)
    spatial = tf.cast(spatial, tf.float32)
    target = tf.cast(target, tf.int32)
    batch = tf.shape(categories)[0]
    scene = qgen.scene_embedding(categories, spatial, object_mask)
    tgt_cat = tf.gather(categories, target, batch_dims=1)
    tgt_spat = tf.gather(spatial, target, batch_dims=1)
    if not greedy and seed is None:
        raise ValueError("sampling (greedy=False) needs a seed")
    seed = tf.constant([0, 0], tf.int32) if seed is None else tf.cast(seed, tf.int32)
    answer_table = tf.constant(qgen.answer_ids, tf.int32)

    state = qgen.zero_state(batch)
    prev = tf.fill([batch], qgen.start_id)
    done = tf.zeros([batch], tf.bool)
    columns = [prev[:, None]]
    generated = [tf.zeros([batch, 1], tf.float32)]
    for_guesser = [tf.zeros([batch, 1], tf.bool)]
    asked_count = tf.zeros([batch], tf.int32)
    for q in range(max_questions):
        q_ids, last, state_q, stopped = _generate_question(qgen, prev, state, ~done, scene, max_tokens, greedy,
                                                           seed, q)
        asked = ~done & ~stopped
        # Feed the question's last token ("?" or the truncated last word); its output is not used
        # (the next token is the oracle's answer).
        _, fed = qgen.step(last, state_q, scene)
        state = [tf.where(asked[:, None], n, o) for n, o in zip(fed, state_q)]
        question = tf.where(asked[:, None], q_ids, PAD_ID)
        answer_idx = tf.argmax(oracle.logits_from_ids(question, tgt_cat, tgt_spat), -1, output_type=tf.int32)
        answer = tf.where(asked, tf.gather(answer_table, answer_idx), PAD_ID)
        columns += [q_ids, answer[:, None]]
        generated += [tf.cast(q_ids != PAD_ID, tf.float32), tf.zeros([batch, 1], tf.float32)]
        for_guesser += [(q_ids != PAD_ID) & asked[:, None], asked[:, None]]
        asked_count += tf.cast(asked, tf.int32)
        done = done | stopped
        prev = tf.where(asked, answer, prev)
    ids = tf.concat(columns, axis=1)
    gen = tf.concat(generated, axis=1)
    keep = ids != PAD_ID
    dialogue = _pack(ids, keep)
    gen_mask = _pack(gen, keep)
    guesser_ids = _at_least_one_column(_pack(ids, tf.concat(for_guesser, axis=1)))
    log_p = guesser.log_probs_from_ids(guesser_ids, categories, spatial, object_mask)
    guess = tf.argmax(log_p, axis=-1, output_type=tf.int32)
    return {
        "dialogue": dialogue,
        "generated": gen_mask,
        "guesser_ids": guesser_ids,
        "guess": guess,
        "success": tf.cast(guess == target, tf.float32),
        "num_questions": asked_count,
    }
