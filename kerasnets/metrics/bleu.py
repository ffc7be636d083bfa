"""Corpus BLEU (Papineni, Roukos, Ward, Zhu 2002), as used for captioning (Xu et al. 2015 report BLEU-1..4).

For hypotheses `c_1..c_M` (token lists), each with a set of references:

    p_n  = sum_m sum_{g in ngrams_n(c_m)} min(count_{c_m}(g), max_r count_{r}(g))
           / sum_m |ngrams_n(c_m)|                          (clipped, "modified" n-gram precision)
    c    = sum_m |c_m|,   r = sum_m |r*_m|,   r*_m the reference closest in length to c_m
           (the shorter one on a tie)
    BP   = 1 if c > r else exp(1 - r / c)                   (brevity penalty; 0 if c = 0)
    BLEU-N = BP * exp(sum_{n=1..N} (1/N) log p_n)           (0 if some p_n = 0; no smoothing)

Counts are summed over the corpus before dividing (corpus BLEU, not a mean of
sentence BLEUs). This is what `nltk.translate.bleu_score.corpus_bleu` with
uniform weights and no smoothing computes (checked: equal to 1e-16 on
random corpora), except that nltk counts `max(1, |ngrams_n(c_m)|)` in the
denominator, so a hypothesis shorter than n adds 1 there; here it adds 0, as
in Papineni et al. The COCO caption evaluation code differs in its choice of
reference length.
"""

from __future__ import annotations

import collections
import math
from typing import Sequence


def ngram_counts(tokens: Sequence[str], n: int) -> collections.Counter:
    """Counts of the n-grams (tuples) of one token list."""
    return collections.Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def closest_reference_length(hypothesis_length: int, reference_lengths: Sequence[int]) -> int:
    """The reference length nearest to the hypothesis length; the shorter one on a tie."""
    return min(reference_lengths, key=lambda r: (abs(r - hypothesis_length), r))


def bleu_statistics(references: Sequence[Sequence[Sequence[str]]], hypotheses: Sequence[Sequence[str]],
                    max_n: int = 4) -> dict:
    """Corpus sufficient statistics: clipped matches and totals per n, hypothesis and reference lengths."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference sets")
    if max_n < 1:
        raise ValueError(f"max_n must be >= 1, got {max_n}")
    matches = [0] * max_n
    totals = [0] * max_n
    hyp_len = ref_len = 0
    for refs, hyp in zip(references, hypotheses):
        if isinstance(hyp, str) or any(isinstance(r, str) for r in refs):
            raise ValueError("hypotheses and references must be token lists, not strings (split them first)")
        if not refs:
            raise ValueError("every hypothesis needs at least one reference")
        hyp = list(hyp)
        hyp_len += len(hyp)
        ref_len += closest_reference_length(len(hyp), [len(r) for r in refs])
        for n in range(1, max_n + 1):
            counts = ngram_counts(hyp, n)
            max_ref = collections.Counter()
            for ref in refs:
                for gram, count in ngram_counts(list(ref), n).items():
                    max_ref[gram] = max(max_ref[gram], count)
            matches[n - 1] += sum(min(count, max_ref[gram]) for gram, count in counts.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    return {"matches": matches, "totals": totals, "hypothesis_length": hyp_len, "reference_length": ref_len}


def brevity_penalty(hypothesis_length: int, reference_length: int) -> float:
    """`1` if c > r else `exp(1 - r / c)`; 0 for an empty corpus of hypotheses."""
    if hypothesis_length > reference_length:
        return 1.0
    if hypothesis_length == 0:
        return 0.0
    return math.exp(1.0 - reference_length / hypothesis_length)


def corpus_bleu(references, hypotheses, max_n: int = 4) -> dict[str, float]:
    """BLEU-1..`max_n` of a corpus: `{"bleu1": ..., "bleu4": ...}` in [0, 1].

    Args:
        references: per hypothesis, a list of reference token lists.
        hypotheses: token lists (one per image).
        max_n: highest n-gram order.
    """
    stats = bleu_statistics(references, hypotheses, max_n)
    bp = brevity_penalty(stats["hypothesis_length"], stats["reference_length"])
    out = {}
    log_sum = 0.0
    for n in range(1, max_n + 1):
        m, t = stats["matches"][n - 1], stats["totals"][n - 1]
        if m == 0 or t == 0 or log_sum == -math.inf:
            log_sum = -math.inf
            out[f"bleu{n}"] = 0.0
            continue
        log_sum += math.log(m / t)
        out[f"bleu{n}"] = bp * math.exp(log_sum / n)
    return out
