"""fastText: Bag of Tricks for Efficient Text Classification (Joulin, Grave, Bojanowski, Mikolov 2017).

EACL 2017, arXiv:1607.01759. A linear classifier on the average of word and
hashed word n-gram embeddings (`kerasnets.models.fasttext.FastTextClassifier`):

    h = mean_{i in words + n-grams(text)} E[i]          E: (V + 1 + B) x 10, U(-1/10, 1/10)
    p(y | text) = softmax(W h)                         W zeros (fastText's output matrix)
             or  prod over the Huffman path of sigma(+-v_n . h)   (`loss="hs"`, section 2.1)
    loss = -mean_batch log p(y | text)
    lr_t = lr_0 (1 - t / T)                            linear decay to 0 over the run (as fastText)

The text normalization, the vocabulary lookup and fastText's FNV-1a n-gram
hashing are in the model (`kerasnets.ops.text`), so the exported SavedModel
takes raw strings: `serving_default(text: tf.string [N])` ->
`probabilities [N, C]`, `classes [N]` (int64).

Learning rate: fastText does per-example SGD (Hogwild threads) with
`lr` = 0.25 for AG News in the paper's script; here one step averages the
loss over `batch_size` examples, so the step uses `learning_rate * batch_size`
(the same size of update per example seen). fastText decays by tokens seen,
here by steps: `lr_t = learning_rate * batch_size * (1 - t / steps)`.

Paper (Table 1, h=10): AG News 91.5 % (unigrams), 92.5 % (bigrams), 5 epochs,
10M buckets. Data: `embedded` = a synthetic topic corpus whose classes are
partly told apart by word order (`kerasnets.data.text_classification`);
`ag_news` = tensorflow-datasets `ag_news_subset` (title + description).
TFLite export is not available: the string ops (regex, split, FNV loop) are
not TFLite builtins.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal, Optional

import keras
import numpy as np
import tensorflow as tf

from kerasnets.config import RecipeConfig, param
from kerasnets.data import streams
from kerasnets.data.text_classification import load_ag_news, synthetic_topic_corpus
from kerasnets.errors import ConfigError
from kerasnets.models.fasttext import FastTextClassifier, build_vocabulary, string_signature
from kerasnets.optimization import minimize
from kerasnets.training.recipe import Endpoint, Recipe
from kerasnets.utils.plots import plot_history
from kerasnets.models.recipe_model import RecipeModel


@dataclasses.dataclass
class FastTextConfig(RecipeConfig):
    """Defaults: the paper's model (dim 10, bigrams) with a small bucket count, on the embedded corpus."""

    steps: int = param(3000, help="training steps (default: ~5 epochs of the embedded corpus, as the paper)", min=1)
    batch_size: int = param(32, help="global batch size (fastText: 1 per thread)", min=1)
    data: Literal["embedded", "ag_news"] = param(
        "embedded", help="embedded: synthetic topic corpus (no download); ag_news: tfds ag_news_subset"
    )
    dim: int = param(10, help="embedding size (paper: 10)", min=1)
    word_ngrams: int = param(2, help="longest word n-gram (1 = unigrams; paper: 2)", min=1, max=5)
    buckets: int = param(2**20, help="n-gram hash buckets (paper: 10,000,000)", min=1, max=2**31 - 1)
    loss: Literal["softmax", "hs"] = param("softmax", help="softmax or hierarchical softmax (Huffman tree)")
    learning_rate: float = param(0.25, help="fastText's per-example lr (paper AG News: 0.25), decays to 0", min=0.0)
    min_count: int = param(1, help="minimal word count for the vocabulary (paper: 1)", min=1)
    num_train: int = param(20000, help="embedded: training documents", min=1)
    num_test: int = param(2000, help="embedded: test documents", min=1)
    num_classes: int = param(4, help="embedded: classes", min=2)
    max_train: Optional[int] = param(None, help="ag_news: use at most this many training documents", min=1)
    max_test: Optional[int] = param(None, help="ag_news: use at most this many test documents", min=1)
    log_every: int = param(100, help="log every N steps", min=1)

    def validate(self) -> None:
        super().validate()
        if self.data == "ag_news" and self.num_classes != 4:
            raise ConfigError("bad value for 'num_classes': ag_news has 4 classes")


class FastTextTrainer(RecipeModel):
    """The classifier plus its SGD optimizer; `train_step` is one replica's step."""

    def __init__(self, classifier, optimizer, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.optimizer = optimizer

    def call(self, text, training=False):
        return self.classifier(text, training=training)

    @property
    def _default_save_signature(self):
        return string_signature(self)

    def train_step(self, batch):
        text, labels = batch
        with tf.GradientTape() as tape:
            log_p = self.classifier.label_log_prob(text, labels)
            loss = -tf.reduce_mean(log_p)
        minimize(tape, loss, self.classifier.trainable_variables, self.optimizer, model=self.classifier)
        return {"loss": loss, "learning_rate": tf.cast(self.optimizer.learning_rate, tf.float32)}


def linear_decay(step, total_steps: int, initial: float):
    """fastText's schedule by step: `initial * (1 - step / total_steps)`, 0 from `total_steps` on."""
    return keras.optimizers.schedules.PolynomialDecay(initial, total_steps, end_learning_rate=0.0, power=1.0)(step)


class FastTextRecipe(Recipe):
    name = "fasttext"
    paper = ("Joulin, Grave, Bojanowski, Mikolov 2017. Bag of Tricks for Efficient Text Classification. "
             "EACL, arXiv:1607.01759")
    summary = "fastText: averaged word + hashed bigram embeddings, linear softmax / hierarchical softmax; raw text in"
    config_class = FastTextConfig
    key_metrics = ("loss", "learning_rate")

    def __init__(self, config: FastTextConfig | None = None):
        super().__init__(config)
        self.config.validate()
        self._data = None
        self._vocab = None

    # ------------------------------------------------------------------ data
    def data(self):
        """`(texts, labels)` train and test (bytes arrays, int32) and the class names."""
        if self._data is None:
            c = self.config
            if c.data == "embedded":
                self._data = synthetic_topic_corpus(c.num_train, c.num_test, c.num_classes, seed=c.seed)
            else:
                self._data = load_ag_news(c.data_dir, c.download, c.max_train, c.max_test)
            if len(self._data[0][0]) < c.batch_size:
                raise ConfigError(f"batch_size {c.batch_size} is larger than the training set "
                                  f"({len(self._data[0][0])} documents)")
        return self._data

    def vocabulary(self) -> list[str]:
        if self._vocab is None:
            self._vocab = build_vocabulary(self.data()[0][0], self.config.min_count)
        return self._vocab

    def class_counts(self):
        (_, y), _, names = self.data()
        return np.bincount(y, minlength=len(names)).tolist()

    def build_dataset(self, split: str = "train", start_step: int = 0) -> tf.data.Dataset:
        (x_tr, y_tr), (x_te, y_te), _ = self.data()
        if split == "train":
            return streams.array_dataset((x_tr.astype(bytes), y_tr), self.config.batch_size, self.config.seed,
                                         start_step)
        if split == "test":
            return streams.eval_dataset((x_te.astype(bytes), y_te), 1000)
        raise ValueError(f"unknown split '{split}'; expected 'train' or 'test'")

    # ----------------------------------------------------------------- model
    def build_model(self) -> FastTextTrainer:
        c = self.config
        names = self.data()[2]
        classifier = FastTextClassifier(
            self.vocabulary(), len(names), dim=c.dim, buckets=c.buckets, word_ngrams=c.word_ngrams, loss=c.loss,
            class_counts=self.class_counts(), seed=c.seed, name="fasttext",
        )
        schedule = keras.optimizers.schedules.PolynomialDecay(
            c.learning_rate * c.batch_size, c.steps, end_learning_rate=0.0, power=1.0
        )
        optimizer = keras.optimizers.SGD(learning_rate=schedule)
        model = FastTextTrainer(classifier, optimizer, name="fasttext_trainer")
        model(tf.constant(["build"]))
        optimizer.build(classifier.trainable_variables)
        return model

    # ------------------------------------------------------------ evaluation
    def evaluate(self, model) -> dict[str, float]:
        """Test accuracy (the paper's Table 1 metric)."""
        predict = tf.function(lambda t: tf.argmax(model.classifier(t), -1, output_type=tf.int32))
        correct = total = 0
        for text, labels in self.build_dataset("test"):
            correct += int(tf.reduce_sum(tf.cast(predict(text) == labels, tf.int32)))
            total += int(labels.shape[0])
        return {"test_accuracy": correct / total}

    def on_train_end(self, model, run_dir, history):
        summary = dict(self.evaluate(model))
        summary["vocabulary_size"] = len(self.vocabulary())
        plot = plot_history(history, ["loss", "learning_rate"], os.path.join(run_dir, "plots", "training.png"),
                            title="fastText")
        if plot:
            summary["plot"] = plot
        return summary

    # ---------------------------------------------------------------- export
    def export_endpoints(self, model):
        """`serving_default`: raw `text` tf.string `[N]` -> `probabilities` `[N, C]`, `classes` `[N]` int64."""
        classifier = model.classifier

        def serve(text):
            log_p = classifier(text)
            return {"probabilities": tf.exp(log_p), "classes": tf.argmax(log_p, axis=-1)}

        return {"serving_default": Endpoint(serve, [tf.TensorSpec([None], tf.string, name="text")])}

    def representative_dataset(self, num_samples: int = 64):
        (_, _), (x_te, _), _ = self.data()
        for i in range(min(num_samples, len(x_te))):
            # Fixed-width bytes, not object arrays: the export check passes inputs through .npz.
            yield {"text": np.array([x_te[i]], dtype=np.bytes_)}
