"""In-graph text preprocessing for fastText (Joulin et al. 2017): normalization, tokens, hashed n-grams.

Everything here is TensorFlow ops on `tf.string` tensors, so a SavedModel that
uses it takes raw text.

Normalization (`normalize_text`), mirroring the paper's
`classification-results.sh` preprocessing:

1. lowercase (UTF-8 aware, `tf.strings.lower(..., encoding="utf-8")`);
2. `<br />` removed; `"`, `;` and `:` removed;
3. `' . , ( ) ! ?` surrounded by spaces (each becomes its own token);
4. tokens = maximal runs of non-whitespace (`tf.strings.split`), and fastText's
   end-of-sentence token `</s>` appended to every line.

Hashing (`fnv1a_32`, `word_ngram_buckets`) is fastText's own, bit for bit
(`src/dictionary.cc`):

    hash(w):  h = 2166136261; for each byte c of w: h = (h ^ uint32(int8(c))) * 16777619  (mod 2^32)
    n-gram (w_i .. w_j):  h = int64(int32(hash(w_i))); h = h * 116049371 + int64(int32(hash(w_k)))  (mod 2^64)
    bucket = h mod B   (h read as unsigned 64-bit)

The 32-bit hashes are stored as `int32` in fastText and sign-extended when
widened to 64 bits; both quirks are reproduced. The 64-bit arithmetic is done
on (high, low) 32-bit halves held in int64 tensors, so no op relies on integer
overflow behaviour.
"""

from __future__ import annotations

import tensorflow as tf

EOS = "</s>"
FNV_OFFSET = 2166136261
FNV_PRIME = 16777619
NGRAM_MULTIPLIER = 116049371
_M32 = 0xFFFFFFFF


def normalize_text(text):
    """Lowercase and space out / remove punctuation as the paper's scripts (see module doc)."""
    text = tf.strings.lower(tf.convert_to_tensor(text, tf.string), encoding="utf-8")
    text = tf.strings.regex_replace(text, r"<br />", " ")
    text = tf.strings.regex_replace(text, r"[\";:]", " ")
    text = tf.strings.regex_replace(text, r"(['.,()!?])", r" \1 ")
    return text


def tokenize(text, eos: bool = True):
    """Ragged `[N, None]` tokens of normalized text (whitespace split), `</s>` appended if `eos`."""
    tokens = tf.strings.split(normalize_text(text))
    if eos:
        n = tokens.nrows()
        tail = tf.RaggedTensor.from_row_lengths(tf.fill([n], EOS), tf.ones([n], tf.int64))
        tokens = tf.concat([tokens, tail], axis=1)
    return tokens


def fnv1a_32(strings):
    """fastText's 32-bit FNV-1a hash of each string, as int64 in [0, 2^32). Any shape."""
    strings = tf.convert_to_tensor(strings, tf.string)
    shape = tf.shape(strings)
    flat = tf.reshape(strings, [-1])
    lengths = tf.strings.length(flat)  # bytes
    width = tf.maximum(tf.reduce_max(tf.concat([lengths, [0]], 0)), 1)
    raw = tf.cast(tf.io.decode_raw(flat, tf.uint8, fixed_length=width), tf.int64)  # zero-padded bytes
    # uint32(int8(c)): bytes >= 128 are sign-extended.
    raw = tf.where(raw >= 128, raw + (_M32 - 255), raw)
    lengths = tf.cast(lengths, tf.int64)

    def body(i, h):
        c = raw[:, i]
        step = tf.bitwise.bitwise_and(tf.bitwise.bitwise_xor(h, c) * FNV_PRIME, _M32)
        return i + 1, tf.where(tf.cast(i, tf.int64) < lengths, step, h)

    h0 = tf.fill(tf.shape(flat), tf.constant(FNV_OFFSET, tf.int64))
    _, h = tf.while_loop(lambda i, h: i < width, body, (tf.constant(0, tf.int32), h0))
    return tf.reshape(h, shape)


def _widen(h32):
    """uint32 hash (int64 in [0, 2^32)) -> fastText's sign-extended uint64 as (hi, lo) 32-bit halves."""
    hi = tf.where(h32 >= 2**31, tf.constant(_M32, tf.int64), tf.constant(0, tf.int64))
    return hi, h32


def _mul_add(hi, lo, add_hi, add_lo, k=NGRAM_MULTIPLIER):
    """(hi, lo) * k + (add_hi, add_lo) mod 2^64, all halves int64 in [0, 2^32)."""
    a = lo * k  # < 2^59
    lo2 = tf.bitwise.bitwise_and(a, _M32) + add_lo
    carry = tf.bitwise.right_shift(lo2, 32)
    lo2 = tf.bitwise.bitwise_and(lo2, _M32)
    hi2 = tf.bitwise.bitwise_and(hi * k + tf.bitwise.right_shift(a, 32) + add_hi + carry, _M32)
    return hi2, lo2


def _mod_u64(hi, lo, buckets: int):
    """(hi * 2^32 + lo) mod buckets, for buckets < 2^31."""
    base = (2**32) % buckets
    return ((hi % buckets) * base + lo) % buckets


def word_ngram_buckets(tokens, n: int, buckets: int):
    """fastText's word n-gram bucket ids (2..n grams) of ragged `tokens` `[N, None]` -> ragged int64 `[N, None]`.

    For each start i the grams (w_i, w_i+1), (w_i, w_i+1, w_i+2), ... up to length n,
    in fastText's order (start i outer, length inner). Bucket ids are in [0, buckets).
    """
    if n < 2:
        raise ValueError(f"word n-grams need n >= 2, got {n}")
    if not 1 <= buckets < 2**31:
        raise ValueError(f"buckets must be in [1, 2^31), got {buckets}")
    hashes = tokens.with_flat_values(fnv1a_32(tokens.flat_values))
    starts = tf.cast(hashes.row_starts(), tf.int64)
    lengths = tf.cast(hashes.row_lengths(), tf.int64)
    flat = hashes.flat_values
    total = tf.shape(flat, out_type=tf.int64)[0]
    pos = tf.range(total)
    row = tf.cast(hashes.value_rowids(), tf.int64)
    end = tf.gather(starts + lengths, row)  # exclusive end of each token's row
    hi, lo = _widen(flat)
    per_length = []
    for k in range(1, n):  # gram of length k + 1 starting at pos
        nxt = tf.minimum(pos + k, total - 1)
        nhi, nlo = _widen(tf.gather(flat, nxt))
        hi, lo = _mul_add(hi, lo, nhi, nlo)
        per_length.append((pos + k < end, _mod_u64(hi, lo, buckets)))
    # Interleave: for each start position, lengths 2..n in order; drop grams running past the row.
    valid = tf.stack([v for v, _ in per_length], axis=1)  # [total, n-1]
    ids = tf.stack([b for _, b in per_length], axis=1)
    keep_ids = tf.boolean_mask(ids, valid)
    keep_rows = tf.boolean_mask(tf.repeat(row[:, None], n - 1, axis=1), valid)
    return tf.RaggedTensor.from_value_rowids(keep_ids, keep_rows, nrows=hashes.nrows())
