"""Text classification corpora for fastText: an embedded synthetic corpus and AG News from tfds.

Both return `(texts_train, labels_train), (texts_test, labels_test), class_names`
with `texts` a NumPy array of UTF-8 `bytes` and `labels` int32.

* `embedded` (`synthetic_topic_corpus`): no download, deterministic by seed.
  Each class has its own *topic words*; all classes share a Zipf-distributed
  background vocabulary; and each class has *ordered phrases*: pairs of
  shared "phrase words" (a, b) whose reversed order (b, a) belongs to another
  class. Single words of a phrase say nothing about the class (each appears in
  two classes' phrases), only their order does, so word bigrams help, as on
  the paper's data. Some words are capitalised and followed by punctuation to
  exercise the in-model normalization. The topic-word rate sets how hard the
  unigram part of the problem is.
* `ag_news` (`load_ag_news`): tensorflow-datasets `ag_news_subset` (4 classes,
  120,000 train / 7,600 test); text = title + " " + description, as fastText's
  script concatenates the CSV fields.
"""

from __future__ import annotations

import numpy as np

AG_NEWS_CLASSES = ("World", "Sports", "Business", "Sci/Tech")
_SYLLABLES = ("ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "ve", "zu", "da", "fe", "gi", "ho", "ju", "bo",
              "ny", "qua", "tre", "sil")


def _words(rng, count: int, taken: set) -> list[str]:
    out = []
    while len(out) < count:
        w = "".join(rng.choice(_SYLLABLES, size=rng.integers(2, 4)))
        if w not in taken:
            taken.add(w)
            out.append(w)
    return out


def synthetic_topic_corpus(
    num_train: int = 20000,
    num_test: int = 2000,
    num_classes: int = 4,
    topic_words: int = 60,
    shared_words: int = 400,
    phrases_per_class: int = 20,
    topic_rate: float = 0.02,
    phrase_rate: float = 0.12,
    length=(15, 40),
    class_weights=None,
    seed: int = 0,
):
    """A synthetic labelled corpus (see module doc): `(train, test, class_names)`."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if num_train < 1 or num_test < 1:
        raise ValueError("num_train and num_test must be >= 1")
    if not (0 <= topic_rate <= 1 and 0 <= phrase_rate <= 1 and topic_rate + phrase_rate <= 1):
        raise ValueError("topic_rate and phrase_rate must be in [0, 1] with a sum <= 1")
    lo, hi = int(length[0]), int(length[1])
    if not 1 <= lo <= hi:
        raise ValueError(f"length must be (min, max) with 1 <= min <= max, got {length}")
    rng = np.random.default_rng(seed)
    taken: set = set()
    topics = [_words(rng, topic_words, taken) for _ in range(num_classes)]
    shared = _words(rng, shared_words, taken)
    zipf = 1.0 / np.arange(1, shared_words + 1)
    zipf /= zipf.sum()
    # Ordered phrases: class k owns (a, b); class (k + 1) % C owns (b, a).
    phrase_words = _words(rng, 2 * phrases_per_class * num_classes, taken)
    phrases: list[list[tuple[str, str]]] = [[] for _ in range(num_classes)]
    for k in range(num_classes):
        for j in range(phrases_per_class):
            base = 2 * (k * phrases_per_class + j)
            a, b = phrase_words[base], phrase_words[base + 1]
            phrases[k].append((a, b))
            phrases[(k + 1) % num_classes].append((b, a))
    weights = np.ones(num_classes) if class_weights is None else np.asarray(class_weights, float)
    if weights.shape != (num_classes,) or np.any(weights <= 0):
        raise ValueError(f"class_weights must be {num_classes} positive numbers")
    weights = weights / weights.sum()

    cum = np.cumsum(zipf)

    def document(label):
        n = int(rng.integers(lo, hi + 1))
        u = rng.random(n)
        topic = rng.integers(topic_words, size=n)
        phrase = rng.integers(len(phrases[label]), size=n)
        background = np.minimum(np.searchsorted(cum, rng.random(n)), shared_words - 1)
        capital = rng.random(n) < 0.05
        punct = rng.random(n) < 0.05
        marks = rng.integers(4, size=n)
        out = []
        for i in range(n):
            if u[i] < topic_rate:
                out.append(topics[label][topic[i]])
            elif u[i] < topic_rate + phrase_rate:
                out.extend(phrases[label][phrase[i]])
            else:
                out.append(shared[background[i]])
            if capital[i]:
                out[-1] = out[-1].capitalize()
            if punct[i]:
                out[-1] += ".,!?"[marks[i]]
        return " ".join(out).encode()

    def split(n):
        labels = rng.choice(num_classes, size=n, p=weights).astype("int32")
        return np.array([document(int(y)) for y in labels], dtype=object), labels

    train = split(num_train)
    test = split(num_test)
    return train, test, tuple(f"topic_{k}" for k in range(num_classes))


def load_ag_news(data_dir=None, download: bool = False, max_train=None, max_test=None):
    """AG News (`ag_news_subset`) from tensorflow-datasets: title + " " + description, 4 classes."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder("ag_news_subset", data_dir=data_dir)
        if download:
            builder.download_and_prepare()
        splits = []
        for split, limit in (("train", max_train), ("test", max_test)):
            name = split if limit is None else f"{split}[:{int(limit)}]"
            ds = builder.as_dataset(split=name)
            texts, labels = [], []
            for ex in tfds.as_numpy(ds):
                texts.append(bytes(ex["title"]) + b" " + bytes(ex["description"]))
                labels.append(int(ex["label"]))
            splits.append((np.array(texts, dtype=object), np.array(labels, "int32")))
    except (AssertionError, FileNotFoundError) as exc:
        raise FileNotFoundError(
            f"ag_news_subset is not prepared in data_dir={data_dir!r}; pass download=True on a machine with "
            f"network access, or prepare it there and copy the directory ({exc})"
        ) from None
    if len(splits[0][0]) == 0:
        raise ValueError("ag_news_subset train split is empty")
    return splits[0], splits[1], AG_NEWS_CLASSES
