"""Corpus BLEU-1..4 (Papineni et al. 2002) on hand-computed cases."""

import math

import pytest

from kerasnets.metrics.bleu import brevity_penalty, closest_reference_length, corpus_bleu


def toks(text):
    return text.split()


def test_papineni_modified_unigram_precision():
    # Papineni et al. 2002, Sec. 2.1: "the" x 7 against two references -> p1 = 2/7.
    refs = [[toks("the cat is on the mat"), toks("there is a cat on the mat")]]
    hyp = [toks("the the the the the the the")]
    assert corpus_bleu(refs, hyp, max_n=1)["bleu1"] == pytest.approx(2 / 7)  # c = 7 > r = 6: BP = 1


def test_identical_caption_scores_one():
    refs = [[toks("a red circle above a blue square")]]
    assert corpus_bleu(refs, [toks("a red circle above a blue square")]) == pytest.approx(
        {"bleu1": 1.0, "bleu2": 1.0, "bleu3": 1.0, "bleu4": 1.0})


def test_brevity_penalty_and_missing_4grams():
    # c = 3, r = 6: BP = exp(1 - 6/3) = e^-1; p1 = p2 = p3 = 1, no 4-gram -> BLEU-4 = 0.
    out = corpus_bleu([[toks("a red circle on the left")]], [toks("a red circle")])
    assert out["bleu1"] == pytest.approx(math.exp(-1))
    assert out["bleu2"] == pytest.approx(math.exp(-1))
    assert out["bleu3"] == pytest.approx(math.exp(-1))
    assert out["bleu4"] == 0.0


def test_closest_reference_length_takes_the_shorter_on_a_tie():
    assert closest_reference_length(5, [4, 6]) == 4
    assert closest_reference_length(5, [7, 3, 6]) == 6
    # c = 5, references of length 4 and 6 -> r = 4 -> no penalty; r = 6 would give exp(1 - 6/5).
    refs = [[toks("a b c d"), toks("a b c d e f")]]
    assert corpus_bleu(refs, [toks("a b c d e")], max_n=1)["bleu1"] == pytest.approx(1.0)
    assert brevity_penalty(5, 6) == pytest.approx(math.exp(1 - 6 / 5))
    assert brevity_penalty(0, 3) == 0.0
    assert brevity_penalty(4, 4) == pytest.approx(1.0)  # c = r: exp(0)


def test_corpus_counts_are_summed_before_dividing():
    refs = [[toks("the cat sat")], [toks("a dog runs"), toks("the dog")]]
    hyps = [toks("the cat the cat"), toks("a dog")]
    # clipped unigrams: the 1/2, cat 1/2 | a 1, dog 1 -> p1 = 4/6
    # bigrams: "the cat" 1 of 2, "cat the" 0 | "a dog" 1 -> p2 = 2/4;  trigrams: 0/2 -> BLEU-3 = 0
    # lengths: c = 6; r = 3 + 2 (closest to 2 among 3 and 2) = 5 -> BP = 1
    out = corpus_bleu(refs, hyps)
    assert out["bleu1"] == pytest.approx(4 / 6)
    assert out["bleu2"] == pytest.approx(math.sqrt(4 / 6 * 2 / 4))
    assert out["bleu3"] == 0.0 and out["bleu4"] == 0.0
    # the mean of sentence BLEU-2s would differ: (sqrt(2/4 * 1/3) + 1) / 2
    assert out["bleu2"] != pytest.approx((math.sqrt(0.5 / 3) + 1) / 2)


def test_bad_input():
    with pytest.raises(ValueError, match="reference sets"):
        corpus_bleu([[toks("a")]], [toks("a"), toks("b")])
    with pytest.raises(ValueError, match="token lists"):
        corpus_bleu([["a b"]], ["a b"])
    with pytest.raises(ValueError, match="at least one reference"):
        corpus_bleu([[]], [toks("a")])
