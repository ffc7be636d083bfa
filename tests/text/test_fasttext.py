"""fasttext: FNV-1a and n-gram buckets vs an independent fastText re-implementation, normalization,
Huffman tree and hierarchical softmax, linear lr decay, feature averaging, tiny runs, raw-string export."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.config import apply_overrides
from kerasnets.errors import ConfigError
from kerasnets.layers import HierarchicalSoftmax
from kerasnets.layers.hierarchical_softmax import huffman_codes
from kerasnets.models.fasttext import FastTextClassifier, build_vocabulary
from kerasnets.ops.text import fnv1a_32, tokenize, word_ngram_buckets
from kerasnets.recipes.fasttext import FastTextConfig, FastTextRecipe, linear_decay
from kerasnets.testing import run_layer_test
from kerasnets.training import engine


# ---- independent reference of fastText's src/dictionary.cc hashing (Python ints, explicit wraparound)
def ref_hash(word: str) -> int:
    h = 2166136261
    for byte in word.encode("utf-8"):
        signed = byte - 256 if byte >= 128 else byte  # int8_t(c)
        h = ((h ^ (signed & 0xFFFFFFFF)) * 16777619) % 2**32
    return h


def ref_ngrams(words, n, bucket):
    hashes = [h - 2**32 if h >= 2**31 else h for h in map(ref_hash, words)]  # stored as int32_t
    out = []
    for i in range(len(hashes)):
        h = hashes[i] % 2**64  # uint64_t h = hashes[i] (sign extension)
        for j in range(i + 1, min(len(hashes), i + n)):
            h = (h * 116049371 + hashes[j]) % 2**64
            out.append(h % bucket)
    return out


def tiny(**overrides):
    base = dict(num_train=2000, num_test=400, steps=250, buckets=4096, log_every=50, checkpoint_every=10**6,
                strategy="default")
    base.update(overrides)
    return FastTextConfig(**base)


def test_fnv1a_known_values():
    got = fnv1a_32(["", "a", "foobar"]).numpy().tolist()
    # Published FNV-1a 32-bit test vectors.
    assert got == [0x811C9DC5, 0xE40C292C, 0xBF9CF968]
    words = ["café", "naïve", "</s>", "日本", "x" * 40]
    assert fnv1a_32(words).numpy().tolist() == [ref_hash(w) for w in words]
    assert fnv1a_32(tf.constant([["a", "b"], ["c", ""]])).shape == (2, 2)


@pytest.mark.parametrize("n, bucket", [(2, 10_000_000), (3, 2_000_000), (2, 7)])
def test_word_ngram_buckets_match_fasttext(n, bucket):
    texts = ["the quick brown fox", "", "naïve café au lait !", "one"]
    tokens = tokenize(texts)
    got = word_ngram_buckets(tokens, n, bucket).to_list()
    want = [ref_ngrams([w.decode() for w in row], n, bucket) for row in tokens.to_list()]
    assert got == want
    assert word_ngram_buckets(tokens, n, bucket).to_list() == got  # deterministic
    # Hand case: "one </s>" -> the single bigram (one, </s>).
    assert got[3] == ref_ngrams(["one", "</s>"], n, bucket) and len(got[3]) == 1
    with pytest.raises(ValueError, match="n >= 2"):
        word_ngram_buckets(tokens, 1, bucket)


def test_normalization():
    tokens = tokenize(['Hello, World!<br />It\'s "OK"; Yes: (Fine)?', "  "]).to_list()
    assert tokens[0] == [b"hello", b",", b"world", b"!", b"it", b"'", b"s", b"ok", b"yes", b"(", b"fine", b")",
                         b"?", b"</s>"]
    assert tokens[1] == [b"</s>"]
    assert tokenize(["ÉCOLE"]).to_list()[0][0] == "école".encode()


def test_huffman_tree():
    counts = [50, 1, 20, 1, 5, 100]
    paths, codes = huffman_codes(counts)
    lengths = [len(c) for c in codes]
    # More frequent classes never get longer codes.
    order = np.argsort(counts)
    assert all(lengths[order[i]] >= lengths[order[i + 1]] for i in range(len(counts) - 1))
    assert lengths[5] == 1 and lengths[1] == lengths[3] == max(lengths)
    # Prefix-free and complete (Kraft equality), n - 1 internal nodes with the root last.
    words = ["".join(map(str, c)) for c in codes]
    assert not any(a != b and b.startswith(a) for a in words for b in words)
    assert sum(2.0 ** -l for l in lengths) == pytest.approx(1.0)
    assert all(p[0] == len(counts) - 2 for p in paths)
    # Optimal: expected length = sum of merged weights of the Huffman construction (hand: 2+7+27+77+177).
    assert sum(c * l for c, l in zip(counts, lengths)) == 2 + 7 + 27 + 77 + 177
    assert huffman_codes([3]) == ([[]], [[]])


def test_hierarchical_softmax_probabilities_sum_to_one():
    rng = np.random.default_rng(0)
    layer = HierarchicalSoftmax([5, 3, 9, 1, 1, 30, 2])
    h = rng.normal(size=(16, 8)).astype("float32")
    layer.build(h.shape)
    layer.node_vectors.assign(rng.normal(size=(6, 8)).astype("float32"))
    log_p = layer(h).numpy()
    np.testing.assert_allclose(np.exp(log_p).sum(-1), 1.0, atol=1e-5)
    labels = rng.integers(7, size=16)
    np.testing.assert_allclose(layer.label_log_prob(h, labels).numpy(), log_p[np.arange(16), labels], atol=1e-5)
    # Hand case: class 5 (most frequent, code length 1): p = sigma(+-v_root . h).
    paths, codes = huffman_codes(layer.class_counts)
    root = layer.node_vectors.numpy()[paths[5][0]]
    s = h @ root
    want = 1 / (1 + np.exp(-s)) if codes[5][0] == 1 else 1 / (1 + np.exp(s))
    np.testing.assert_allclose(np.exp(log_p[:, 5]), want, rtol=1e-5)


def test_hierarchical_softmax_layer_contract():
    x = np.random.default_rng(1).normal(size=(4, 3)).astype("float32")
    out = run_layer_test(HierarchicalSoftmax, {"class_counts": [4, 2, 1]}, x, expected_output_shape=(4, 3),
                         expected_num_trainable_weights=1)
    np.testing.assert_allclose(np.exp(out).sum(-1), 1.0, atol=1e-6)


def test_linear_lr_decay_values():
    got = [float(linear_decay(s, 100, 2.0)) for s in (0, 25, 50, 100, 150)]
    np.testing.assert_allclose(got, [2.0, 1.5, 1.0, 0.0, 0.0], atol=1e-6)
    recipe = FastTextRecipe(tiny(steps=8, batch_size=4, learning_rate=0.5))
    model = recipe.build_model()
    x, y = next(iter(recipe.build_dataset("train")))
    rates = [float(model.train_step((x, y))["learning_rate"]) for _ in range(3)]
    # lr_t = 0.5 * batch 4 * (1 - t / 8), read after step t applied.
    np.testing.assert_allclose(rates, [2.0 * (1 - t / 8) for t in (1, 2, 3)], rtol=1e-6)


def test_document_vector_is_the_mean_of_word_and_bigram_rows():
    model = FastTextClassifier(["b", "a", "</s>"], 3, dim=4, buckets=16, word_ngrams=2)
    ids = model.feature_ids(tf.constant(["A zzz b"])).to_list()[0]
    # Words: a -> 2, b -> 1, </s> -> 3 (StringLookup: 0 is OOV, dropped for "zzz");
    # bigrams of (a, zzz, b, </s>) offset by V + 1 = 4: the OOV word still takes part.
    assert ids[:3] == [2, 1, 3]
    assert ids[3:] == [4 + b for b in ref_ngrams(["a", "zzz", "b", "</s>"], 2, 16)]
    emb = model.embeddings.numpy()
    np.testing.assert_allclose(model.document_vectors(tf.constant(["A zzz b"])).numpy()[0], emb[ids].mean(0),
                               rtol=1e-6)
    assert np.abs(emb).max() <= 1 / 4  # U(-1/dim, 1/dim)
    # Zero output matrix: uniform predictions at the start, as fastText.
    np.testing.assert_allclose(np.exp(model(tf.constant(["a b"])).numpy()), 1 / 3, atol=1e-6)
    unigram = FastTextClassifier(["a"], 2, dim=2, word_ngrams=1)
    assert unigram.embeddings.shape == (2, 2)


def test_vocabulary_uses_the_model_normalization():
    vocab = build_vocabulary([b"Dog, dog cat", b"CAT dog"])
    assert vocab == ["dog", "</s>", "cat", ","]
    assert build_vocabulary([b"a a b"], min_count=2) == ["a"]


def test_synthetic_corpus_is_deterministic():
    a, b = FastTextRecipe(tiny()).data(), FastTextRecipe(tiny()).data()
    assert list(a[0][0][:5]) == list(b[0][0][:5])
    assert len(a[0][0]) == 2000 and set(np.unique(a[0][1])) == {0, 1, 2, 3}


def test_bad_config():
    with pytest.raises(ConfigError, match="loss"):
        apply_overrides(FastTextConfig(), {"loss": "ns"})
    with pytest.raises(ConfigError, match="buckets"):
        apply_overrides(FastTextConfig(), {"buckets": "0"})
    with pytest.raises(ValueError, match="class_counts"):
        FastTextClassifier(["a"], 3, loss="hs")


@pytest.mark.slow
def test_tiny_run_beats_chance_and_exports_raw_strings(tmp_path):
    from kerasnets.export import export_saved_model

    recipe = FastTextRecipe(tiny())
    result = engine.train(recipe, str(tmp_path / "run"))
    assert result.summary["test_accuracy"] > 0.5  # 4 balanced classes: chance 0.25
    # export_run's fresh-process check passes inputs through .npz, which cannot hold tf.string
    # inputs (object arrays need pickle): export directly and check a fresh process here.
    path = export_saved_model(recipe, result.model, export_root=str(tmp_path / "sm"))
    script = (
        "import sys, json, tensorflow as tf\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "out = m.signatures['serving_default'](text=tf.constant(['Raw TEXT, here!', '']))\n"
        "print(json.dumps({k: v.numpy().tolist() for k, v in out.items()}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, path], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": ""}, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    fresh = json.loads(proc.stdout.strip().splitlines()[-1])
    want = np.exp(result.model.classifier(tf.constant(["Raw TEXT, here!", ""])).numpy())
    np.testing.assert_allclose(fresh["probabilities"], want, atol=1e-6)
    assert set(fresh) == {"probabilities", "classes"}
    reloaded = tf.saved_model.load(path)
    texts = tf.constant(["Some RAW text, with punctuation!", ""] + [t.decode() for t in recipe.data()[1][0][:3]])
    out = reloaded.signatures["serving_default"](text=texts)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(-1), 1.0, atol=1e-5)
    want = np.exp(result.model.classifier(texts).numpy())
    np.testing.assert_allclose(out["probabilities"].numpy(), want, atol=1e-6)
    np.testing.assert_array_equal(out["classes"].numpy(), want.argmax(-1))


@pytest.mark.slow
def test_hierarchical_softmax_run_beats_chance(tmp_path):
    recipe = FastTextRecipe(tiny(loss="hs", steps=500))
    result = engine.train(recipe, str(tmp_path / "run"))
    assert result.summary["test_accuracy"] > 0.5
    probs = np.exp(result.model.classifier(tf.constant(["a b c"])).numpy())
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_ag_news_loader_offline_with_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    recipe = FastTextRecipe(tiny(data="ag_news", data_dir=str(tmp_path), steps=3, batch_size=4))
    with tfds.testing.mock_data(num_examples=12):
        (x, y), (xt, yt), names = recipe.data()
        result = engine.train(recipe, str(tmp_path / "run"))
    assert names == ("World", "Sports", "Business", "Sci/Tech")
    assert len(x) == 12 and isinstance(x[0], bytes) and b" " in x[0] and set(y) <= {0, 1, 2, 3}
    assert 0.0 <= result.summary["test_accuracy"] <= 1.0


def test_ag_news_missing_is_a_clear_error(tmp_path):
    recipe = FastTextRecipe(tiny(data="ag_news", data_dir=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="download=True"):
        recipe.data()


def test_registered():
    from kerasnets import registry

    assert registry.get("fasttext") is FastTextRecipe


@pytest.mark.slow
def test_two_replicas_run(tmp_path):
    from kerasnets.testing import fresh_mirrored_strategy

    recipe = FastTextRecipe(tiny(steps=10, log_every=5, strategy="mirrored"))
    result = engine.train(recipe, str(tmp_path / "run"), strategy=fresh_mirrored_strategy())
    assert np.isfinite(result.history[-1]["loss"]) and 0.0 <= result.summary["test_accuracy"] <= 1.0
