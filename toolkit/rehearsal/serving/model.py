"""The replicas' language model: a word bigram model built at start-up from text that ships with Python.

No package on the registries ships a generative model small enough for a CPU drill without a download
at run time, so each replica builds this one from ``pydoc_data.topics`` (Python's own help texts,
~80 000 words, in every CPython install) with numpy: a vocabulary of the words and punctuation, and a
sparse table of next-word counts. Generation samples the next word from the counts of the previous
one (temperature 1), seeded per request, so the same request gives the same text on every replica.

It is a stand-in for the model of a real server (vLLM in ``gpu_inference``): what the drill measures
is the serving path (balancer, draining, hand-off), not the text. The per-token time is set by the
server, not by this model (sampling one word takes microseconds).
"""

from __future__ import annotations

import re
from typing import Iterator, Optional

import numpy as np

_WORD = re.compile(r"[A-Za-z]+|[.,;:()]")


def corpus() -> str:
    """Python's help topics: text that ships with every CPython (``pydoc_data.topics``)."""
    from pydoc_data.topics import topics

    return "\n".join(topics[k] for k in sorted(topics))


class BigramModel:
    """Next-word counts over a corpus; ``generate`` yields words one at a time."""

    def __init__(self, text: Optional[str] = None):
        words = _WORD.findall(corpus() if text is None else text)
        if len(words) < 2:
            raise ValueError("the corpus needs at least two words")
        self.vocab = sorted(set(words))
        index = {w: i for i, w in enumerate(self.vocab)}
        ids = np.fromiter((index[w] for w in words), dtype=np.int64, count=len(words))
        pairs = ids[:-1] * len(self.vocab) + ids[1:]
        keys, counts = np.unique(pairs, return_counts=True)
        self._prev = keys // len(self.vocab)
        self._next = keys % len(self.vocab)
        self._counts = counts.astype(np.float64)
        # rows: the slice of (next, count) for each previous word
        self._start = np.searchsorted(self._prev, np.arange(len(self.vocab) + 1))
        self._index = index

    def next_id(self, prev: int, rng: np.random.Generator) -> int:
        lo, hi = self._start[prev], self._start[prev + 1]
        if lo == hi:  # the corpus's last word: start again anywhere
            return int(rng.integers(len(self.vocab)))
        counts = self._counts[lo:hi]
        return int(self._next[lo + rng.choice(hi - lo, p=counts / counts.sum())])

    def generate(self, prompt: str, max_tokens: int, seed: int = 0) -> Iterator[str]:
        """Up to ``max_tokens`` words following the prompt's last known word (seeded)."""
        rng = np.random.default_rng(seed)
        known = [self._index[w] for w in _WORD.findall(prompt or "") if w in self._index]
        prev = known[-1] if known else int(rng.integers(len(self.vocab)))
        for _ in range(max_tokens):
            prev = self.next_id(prev, rng)
            word = self.vocab[prev]
            yield word if word in ".,;:)" else " " + word
