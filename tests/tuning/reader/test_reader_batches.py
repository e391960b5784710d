"""The reader's training batches (grouped by length) and its span-length limit (learnt from the answers)."""

from __future__ import annotations

import itertools

import numpy as np

from ragtune.tuning.reader.train import MAX_ANSWER_TOKENS, answer_token_limit, length_bucketed_batches


def test_length_buckets_cover_every_row_once_per_epoch_and_pad_less() -> None:
    rng = np.random.default_rng(1)
    lengths = list(rng.integers(20, 256, size=1000))
    batches = list(itertools.islice(length_bucketed_batches(lengths, 16, np.random.default_rng(0), pool=10),
                                    63))  # ceil(1000 / 16) = 63 batches make one epoch
    rows = [r for b in batches for r in b]
    assert sorted(rows) == list(range(1000))  # every window once, none twice
    padded = sum(len(b) * max(lengths[r] for r in b) for b in batches)
    shuffled = np.random.default_rng(0).permutation(1000)
    plain = sum(len(shuffled[i:i + 16]) * max(lengths[r] for r in shuffled[i:i + 16]) for i in range(0, 1000, 16))
    assert padded < 0.8 * plain  # the point of it: far less padding than random batches
    firsts = [b[0] for b in batches]
    assert firsts != sorted(firsts, key=lambda r: lengths[r])  # the batches themselves are shuffled


def test_length_buckets_differ_between_epochs() -> None:
    gen = length_bucketed_batches([5] * 64, 8, np.random.default_rng(0))
    first = [tuple(next(gen)) for _ in range(8)]
    second = [tuple(next(gen)) for _ in range(8)]
    assert sorted(r for b in first for r in b) == sorted(r for b in second for r in b) == list(range(64))
    assert first != second


def test_answer_token_limit_follows_the_training_answers() -> None:
    starts = np.array([0, 10, 10, 10, 10])
    assert answer_token_limit(starts, starts + 4, 256) == MAX_ANSWER_TOKENS  # short answers: the floor
    long = np.full(100, 10)
    ends = long + np.arange(100)  # 1 to 100 tokens
    assert answer_token_limit(long, ends, 256) == 99  # 98 % of them fit (numpy's interpolated percentile: 98.02)
    assert answer_token_limit(long, ends, 128) == 64  # never above half a window
    assert answer_token_limit(np.zeros(3, dtype=int), np.zeros(3, dtype=int), 256) == MAX_ANSWER_TOKENS  # none
