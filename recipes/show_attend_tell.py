"""Show, Attend and Tell: image captioning with soft visual attention (Xu et al. 2015).

Xu, Ba, Kiros, Cho, Courville, Salakhutdinov, Zemel, Bengio. ICML 2015,
arXiv:1502.03044. The model (`kerasnets.models.show_attend_tell.ShowAttendTell`,
attention layer `kerasnets.layers.SoftAttention`):

    a = CNN(image) -> L annotation vectors a_i in R^D     (paper: VGG 14x14x512; default here: small CNN 8x8x128)
    h_0, c_0 = f_init,h(mean a), f_init,c(mean a)
    e_ti = f_att(a_i, h_{t-1}),  alpha_t = softmax_i(e_t),  zhat_t = sigmoid(f_beta(h_{t-1})) sum_i alpha_ti a_i
    h_t = LSTM([E y_{t-1}; zhat_t], h_{t-1})
    p(y_t) = softmax(L_o tanh(E y_{t-1} + L_h h_t + L_z zhat_t))
    loss = mean over captions of [ -sum_t log p(y_t) + lambda sum_i (1 - sum_t alpha_ti)^2 ]

trained with teacher forcing and Adam (the paper: Adam for COCO, RMSProp for
Flickr8k) on every (image, caption) pair. `evaluate` decodes the validation
images greedily and with beam search and reports corpus BLEU-1..4
(`kerasnets.metrics.bleu`) against all reference captions of each image
(paper, COCO, soft attention: BLEU-1/2/3/4 70.7 / 49.2 / 34.4 / 24.3). On the
embedded set the captions are templates, so BLEU is high as soon as the model
picks a template and gets most words right; `*_object_accuracy` (the
percentage of captions naming exactly the drawn colour-shape pairs) is the
stricter check.

Data: `embedded` = synthetic scenes of 1-3 coloured shapes with five
paraphrased captions each (`kerasnets.data.captions.synthetic_captions`);
`coco` = the COCO captions JSON + images under `data_dir`
(`annotations/captions_{train,val}2017.json`, `{train,val}2017/`), loaded
into memory (use `max_train` / `max_val`). Horizontal flips are not used:
they would contradict "left" / "right" in the captions.

Measured default run (embedded, 1000 steps of 64 pairs, 32 x 32 images, small
CNN -> 8 x 8 x 128 annotations, LSTM 256; 500 validation images with 5
references each): BLEU-1/2/3/4 greedy 94.7 / 92.8 / 91.6 / 90.5, beam 3
98.0 / 97.3 / 96.8 / 96.3; captions naming exactly the drawn objects: greedy
65.0 %, beam 85.6 %; validation NLL 0.236 per token. 321 CPU-seconds for
training plus evaluation (5.4 CPU-min; 21.7 min wall on the shared,
overloaded 2-core box). Not comparable with the paper's COCO numbers: the
embedded captions are templates.

Export: `serving_default(images: uint8 [N, H, W, 3], any H, W)` resizes in the
graph and returns `captions` (tf.string [N], beam search), `tokens`
(int32 [N, T]), `log_prob` [N] and `attention` [N, T, H', W'] (zero after
`<end>`); `greedy` is the same with greedy decoding. No TFLite export: the
decoder's string ops and beam bookkeeping are not TFLite builtins.
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
from kerasnets.data.captions import (
    COLOURS,
    PAD_ID,
    SHAPES,
    CaptionVocabulary,
    load_coco_captions,
    synthetic_captions,
    tokenize,
)
from kerasnets.errors import ConfigError
from kerasnets.metrics.bleu import corpus_bleu
from kerasnets.models.show_attend_tell import (
    ShowAttendTell,
    build_small_encoder,
    build_vgg19_encoder,
    caption_nll,
    doubly_stochastic_penalty,
)
from kerasnets.distribute import replica_seed
from kerasnets.optimization import minimize
from kerasnets.training.recipe import Endpoint, Recipe
from kerasnets.utils.plots import plot_history
from kerasnets.models.recipe_model import RecipeModel


@dataclasses.dataclass
class ShowAttendTellConfig(RecipeConfig):
    """Defaults: the paper's model at CPU size on the embedded shapes-and-captions set (~10 min on 2 cores)."""

    steps: int = param(1000, help="training steps (default: ~4 epochs of the embedded caption pairs)", min=1)
    batch_size: int = param(64, help="global batch size of (image, caption) pairs (yunjey: 128)", min=1)
    data: Literal["embedded", "coco"] = param(
        "embedded", help="embedded: synthetic shapes with captions (no download); coco: COCO captions JSON + images"
    )
    learning_rate: float = param(1e-3, help="Adam learning rate", min=0.0)
    alpha_c: float = param(1.0, help="lambda of the doubly stochastic attention penalty", min=0.0)
    encoder: Literal["small", "vgg19"] = param("small", help="small: CPU conv net; vgg19: the paper's (block5_conv4)")
    encoder_filters: tuple[int, ...] = param((32, 64, 128), help="small encoder: filters per stage", min=1)
    encoder_weights: Optional[str] = param(None, help="vgg19: path to no-top VGG19 weights (None: random init)")
    train_encoder: bool = param(True, help="train the encoder with the decoder (the paper keeps VGG fixed)")
    image_size: int = param(32, help="encoder input size (paper: 224); images are resized in the graph", min=16)
    embed_dim: int = param(64, help="word embedding size m (paper: 512)", min=1)
    units: int = param(256, help="LSTM size n (paper: 1000 / 1800)", min=1)
    attention_units: int = param(128, help="hidden size of the attention MLP f_att", min=1)
    dropout: float = param(0.0, help="dropout before the output layer L_o (authors' code: 0.5)", min=0.0, max=0.95)
    use_gate: bool = param(True, help="gating scalar beta on the context (Sec. 4.2.1)")
    max_length: int = param(24, help="caption words kept in training and generated at most", min=1)
    beam_width: int = param(3, help="beam width of the exported model and of the beam evaluation", min=1)
    length_normalize: bool = param(False, help="rank final beams by log-probability per token")
    min_count: int = param(1, help="minimal word count for the vocabulary (COCO: 5 is usual)", min=1)
    max_words: int = param(10000, help="vocabulary size cap, most frequent words (paper: 10,000)", min=1)
    num_train: int = param(4000, help="embedded: training images (5 captions each)", min=1)
    num_val: int = param(500, help="embedded: validation images", min=1)
    max_objects: int = param(3, help="embedded: at most this many shapes per image", min=1, max=3)
    max_train: Optional[int] = param(None, help="coco: use at most this many training images", min=1)
    max_val: Optional[int] = param(None, help="coco: use at most this many validation images", min=1)
    eval_batch_size: int = param(100, help="images per decoding batch in evaluate", min=1)
    attention_examples: int = param(4, help="validation images drawn in plots/attention.png", min=0)
    log_every: int = param(50, help="log every N steps", min=1)

    def validate(self) -> None:
        super().validate()
        if self.encoder == "small":
            reduction = 2 ** (len(self.encoder_filters) - 1)
            if not self.encoder_filters:
                raise ConfigError("bad value for 'encoder_filters': at least one stage is needed")
            if self.image_size % reduction:
                raise ConfigError(f"bad value for 'image_size': {self.image_size} must be divisible by {reduction} "
                                  f"for {len(self.encoder_filters)} encoder stages")
        if self.encoder == "vgg19" and self.image_size < 32:
            raise ConfigError("bad value for 'image_size': vgg19 needs at least 32 (paper: 224)")
        if self.encoder_weights is not None and self.encoder != "vgg19":
            raise ConfigError("'encoder_weights' is only used with encoder='vgg19'")
        if self.encoder_weights is not None and not os.path.isfile(self.encoder_weights):
            raise ConfigError(f"bad value for 'encoder_weights': no file {self.encoder_weights}")
        if self.data == "coco" and not self.data_dir:
            raise ConfigError("data=coco needs data_dir (annotations/captions_{train,val}2017.json + image folders)")


class ShowAttendTellTrainer(RecipeModel):
    """The captioner plus its Adam optimizer; `train_step` is one replica's step."""

    def __init__(self, captioner: ShowAttendTell, optimizer, alpha_c: float, seed: int, **kwargs):
        super().__init__(**kwargs)
        self.captioner = captioner
        self.optimizer = optimizer
        self.alpha_c = alpha_c
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        return self.captioner(inputs, training=training)

    def losses_of(self, images, tokens, training=False, dropout_seed=None):
        """`(loss, parts)`: the paper's per-caption objective averaged over the batch, and its terms."""
        annotations = self.captioner.encode(images, training=training)
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        mask = targets != PAD_ID
        logits, alphas, betas = self.captioner.teacher_forcing(annotations, inputs, training, dropout_seed)
        nll = tf.reduce_mean(caption_nll(logits, targets, mask))
        penalty = tf.reduce_mean(doubly_stochastic_penalty(alphas, mask))
        loss = nll + self.alpha_c * penalty
        maskf = tf.cast(mask, tf.float32)
        correct = tf.cast(tf.argmax(logits, -1, output_type=tf.int32) == targets, tf.float32)
        parts = {
            "nll": nll,
            "token_nll": nll * tf.cast(tf.shape(mask)[0], tf.float32) / tf.reduce_sum(maskf),
            "attention_penalty": penalty,
            "token_accuracy": tf.reduce_sum(correct * maskf) / tf.reduce_sum(maskf),
            "beta": tf.reduce_sum(betas * maskf) / tf.reduce_sum(maskf),
        }
        return loss, parts

    def train_step(self, batch):
        images, tokens = batch
        variables = self.captioner.trainable_variables
        seed = replica_seed(self.seed_generator) if self.captioner.dropout > 0 else None
        with tf.GradientTape() as tape:
            loss, parts = self.losses_of(images, tokens, training=True, dropout_seed=seed)
        minimize(tape, loss, variables, self.optimizer, model=self.captioner)
        return {"loss": loss, **parts}


class ShowAttendTellRecipe(Recipe):
    name = "show_attend_tell"
    paper = ("Xu, Ba, Kiros, Cho, Courville, Salakhutdinov, Zemel, Bengio 2015. Show, Attend and Tell: Neural "
             "Image Caption Generation with Visual Attention. ICML, arXiv:1502.03044")
    summary = "Show, Attend and Tell: CNN annotations + soft-attention LSTM captioner, beam search, BLEU; raw images in"
    config_class = ShowAttendTellConfig
    key_metrics = ("loss", "token_nll", "token_accuracy", "attention_penalty")

    def __init__(self, config: ShowAttendTellConfig | None = None):
        super().__init__(config)
        self.config.validate()
        self._splits = None
        self._vocab = None
        self._decoders = {}

    # ------------------------------------------------------------------ data
    def splits(self):
        """`{"train": (images, captions), "val": (images, captions)}`; captions: lists of strings per image."""
        if self._splits is None:
            c = self.config
            if c.data == "embedded":
                kw = dict(seed=c.seed, image_size=c.image_size, max_objects=c.max_objects)
                self._splits = {"train": synthetic_captions(c.num_train, split="train", **kw),
                                "val": synthetic_captions(c.num_val, split="val", **kw)}
            else:
                self._splits = {split: load_coco_captions(c.data_dir, split, c.image_size, limit)[:2]
                                for split, limit in (("train", c.max_train), ("val", c.max_val))}
        return self._splits

    def vocabulary(self) -> CaptionVocabulary:
        if self._vocab is None:
            self._vocab = CaptionVocabulary.build(self.splits()["train"][1], self.config.min_count,
                                                  self.config.max_words)
        return self._vocab

    def caption_pairs(self, split: str = "train"):
        """`(image_index int32 [P], tokens int32 [P, max_length + 2])`: one row per (image, caption) pair."""
        _, captions = self.splits()[split]
        index = np.asarray([i for i, caps in enumerate(captions) for _ in caps], np.int32)
        tokens = self.vocabulary().encode([cap for caps in captions for cap in caps], self.config.max_length)
        return index, tokens

    def build_dataset(self, split: str = "train", start_step: int = 0) -> tf.data.Dataset:
        if split not in ("train", "val"):
            raise ValueError(f"unknown split '{split}'; expected 'train' or 'val'")
        images = self.splits()[split][0]
        index, tokens = self.caption_pairs(split)
        if split == "train" and len(index) < self.config.batch_size:
            raise ConfigError(f"batch_size {self.config.batch_size} is larger than the training set "
                              f"({len(index)} caption pairs)")
        images_t = tf.constant(images)

        def gather(batch, step=None):
            idx, toks = batch
            return tf.gather(images_t, idx), toks

        if split == "train":
            return streams.array_dataset((index, tokens), self.config.batch_size, self.config.seed, start_step,
                                         map_fn=gather)
        return streams.eval_dataset((index, tokens), self.config.eval_batch_size).map(lambda i, t: gather((i, t)))

    # ----------------------------------------------------------------- model
    def build_model(self) -> ShowAttendTellTrainer:
        c = self.config
        if c.encoder == "small":
            encoder, preprocessing = build_small_encoder(c.image_size, c.encoder_filters), "unit"
        else:
            encoder, preprocessing = build_vgg19_encoder(c.image_size, c.encoder_weights), "caffe"
        encoder.trainable = c.train_encoder
        keras.utils.set_random_seed(c.seed)
        captioner = ShowAttendTell(
            self.vocabulary().tokens, encoder, image_size=c.image_size, embed_dim=c.embed_dim, units=c.units,
            attention_units=c.attention_units, dropout=c.dropout, use_gate=c.use_gate,
            preprocessing=preprocessing, name="show_attend_tell",
        )
        optimizer = keras.optimizers.Adam(c.learning_rate)
        model = ShowAttendTellTrainer(captioner, optimizer, c.alpha_c, c.seed, name="show_attend_tell_trainer")
        model((tf.zeros([1, c.image_size, c.image_size, 3], tf.uint8), tf.zeros([1, 2], tf.int32)))
        optimizer.build(captioner.trainable_variables)
        return model

    # ------------------------------------------------------------ decoding
    def decoder(self, model, kind: str):
        """A cached tf.function: uint8 images -> (ids, alphas[, log_prob]) with `kind` in {greedy, beam}."""
        key = (id(model), kind)
        if key not in self._decoders:
            c, cap = self.config, model.captioner
            if kind == "greedy":
                fn = lambda images: cap.greedy_decode(images, c.max_length)  # noqa: E731
            elif kind == "beam":
                fn = lambda images: cap.beam_search(images, c.max_length, c.beam_width,  # noqa: E731
                                                    c.length_normalize)
            else:
                raise ValueError(f"unknown decoder '{kind}'; expected 'greedy' or 'beam'")
            self._decoders[key] = tf.function(fn)
        return self._decoders[key]

    def caption_images(self, model, images, kind: str = "beam"):
        """Captions (lists of words) and attention `[N, T, L]` of uint8 images, in batches."""
        vocab, words, alphas = self.vocabulary(), [], []
        step = self.config.eval_batch_size
        for i in range(0, len(images), step):
            out = self.decoder(model, kind)(tf.constant(images[i : i + step]))
            words.extend(vocab.decode_words(row) for row in out[0].numpy())
            alphas.append(out[1].numpy())
        return words, np.concatenate(alphas)

    # ------------------------------------------------------------ evaluation
    def evaluate(self, model) -> dict[str, float]:
        """Corpus BLEU-1..4 (in %) on the validation images, greedy and beam search, plus the val loss."""
        images, captions = self.splits()["val"]
        references = [[tokenize(cap) for cap in caps] for caps in captions]
        out = {}
        for kind in ("greedy", "beam"):
            hypotheses, _ = self.caption_images(model, images, kind)
            for key, value in corpus_bleu(references, hypotheses).items():
                out[f"{kind}_{key}"] = 100.0 * value
            out[f"{kind}_mean_length"] = float(np.mean([len(h) for h in hypotheses]))
            if self.config.data == "embedded":
                # BLEU is lenient on templated captions: also count captions naming exactly the drawn objects.
                hits = [mentioned_objects(h) == mentioned_objects(refs[0]) for h, refs in zip(hypotheses, references)]
                out[f"{kind}_object_accuracy"] = 100.0 * float(np.mean(hits))
        total = count = 0.0
        losses = tf.function(lambda im, tk: model.losses_of(im, tk)[1]["token_nll"])
        for im, tk in self.build_dataset("val"):
            n = float(tf.reduce_sum(tf.cast(tk[:, 1:] != PAD_ID, tf.float32)))
            total += float(losses(im, tk)) * n
            count += n
        out["val_token_nll"] = total / count
        return out

    def on_train_end(self, model, run_dir, history):
        summary = dict(self.evaluate(model))
        summary["vocabulary_size"] = len(self.vocabulary())
        images, captions = self.splits()["val"]
        n = min(self.config.attention_examples, len(images))
        if n:
            words, alphas = self.caption_images(model, images[:n], "beam")
            summary["examples"] = [{"generated": " ".join(w), "references": caps}
                                   for w, caps in zip(words, captions[:n])]
            summary["attention_plot"] = plot_attention(
                images[:n], words, alphas, model.captioner.grid_shape, os.path.join(run_dir, "plots", "attention.png"))
        plot = plot_history(history, ["loss", "token_nll", "token_accuracy", "attention_penalty", "beta"],
                            os.path.join(run_dir, "plots", "training.png"), title="Show, Attend and Tell")
        if plot:
            summary["plot"] = plot
        return summary

    # ---------------------------------------------------------------- export
    def export_endpoints(self, model):
        """`serving_default` (beam search) and `greedy`: uint8 `images [N, H, W, 3]` -> captions and attention."""
        c, cap, vocab = self.config, model.captioner, self.vocabulary()
        gh, gw = cap.grid_shape
        spec = [tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")]

        def outputs(ids, alphas):
            steps = tf.shape(ids)[1]
            return {"captions": vocab.decode_tf(ids), "tokens": ids,
                    "attention": tf.reshape(alphas, [-1, steps, gh, gw])}

        def beam(images):
            ids, alphas, log_prob = cap.beam_search(images, c.max_length, c.beam_width, c.length_normalize)
            return {**outputs(ids, alphas), "log_prob": log_prob}

        def greedy(images):
            return outputs(*cap.greedy_decode(images, c.max_length))

        return {"serving_default": Endpoint(beam, spec), "greedy": Endpoint(greedy, spec)}

    def representative_dataset(self, num_samples: int = 64):
        images = self.splits()["val"][0]
        for i in range(min(num_samples, len(images))):
            yield {"images": images[i : i + 1]}


def mentioned_objects(words) -> set[tuple[str, str]]:
    """The `(colour, shape)` pairs a caption of the embedded set names ("a red circle ..." -> {("red", "circle")}).

    The first reference caption of every embedded image names all its objects.
    """
    return {(a, b) for a, b in zip(words, words[1:]) if a in COLOURS and b in SHAPES}


def plot_attention(images, captions, alphas, grid_shape, path: str, max_words: int = 24) -> str:
    """The paper's Fig. 2/3 style: each image, then per generated word the image with its attention map.

    `alphas [N, T, L]` are reshaped to the annotation grid, upsampled to the
    image size (bilinear) and shown as brightness: bright = attended.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    gh, gw = grid_shape
    columns = 1 + max(1, min(max_words, max(len(c) for c in captions) + 1))
    fig, axes = plt.subplots(len(images), columns, figsize=(1.6 * columns, 1.8 * len(images)), squeeze=False)
    for row, (image, words, alpha) in enumerate(zip(images, captions, alphas)):
        h, w = image.shape[:2]
        axes[row, 0].imshow(image)
        axes[row, 0].set_title("input", fontsize=8)
        for col in range(1, columns):
            ax = axes[row, col]
            ax.axis("off")
            t = col - 1
            if t > len(words) or t >= len(alpha):
                continue
            word = words[t] if t < len(words) else "<end>"
            grid = alpha[t].reshape(gh, gw).astype(np.float32)
            grid = grid / max(float(grid.max()), 1e-8)
            up = np.asarray(Image.fromarray(grid, mode="F").resize((w, h), Image.BILINEAR))
            shown = image.astype(np.float32) / 255.0 * (0.25 + 0.75 * np.clip(up, 0, 1)[..., None])
            ax.imshow(shown)
            ax.set_title(word, fontsize=8)
        axes[row, 0].axis("off")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
