"""BigramModel: a tiny word-level language model, trained when the app starts.

A real app would load an LLM here. This one counts which word follows which
in a small text (corpus.txt, shipped with the app) and samples from those
counts, so it runs anywhere in milliseconds with nothing to download.
"""
import random
import re
from collections import Counter, defaultdict
from typing import Dict, Iterator, List, Optional

TOKEN_RE = re.compile(r"[a-z']+|[.,!?;:]")
SENTENCE_END = {".", "!", "?"}
PUNCTUATION = SENTENCE_END | {",", ";", ":"}
# words too common to make a good topic for a chat reply
STOPWORDS = {
    "the", "and", "a", "an", "of", "to", "in", "on", "is", "it", "its", "he", "she", "you", "i",
    "with", "for", "by", "at", "as", "are", "was", "be", "this", "that", "his", "her", "their",
    "them", "they", "about", "what", "how", "who", "does", "can", "could", "tell", "me", "some",
}


def tokenize(text: str) -> List[str]:
    """Lowercase words and punctuation marks: "The cat." -> ["the", "cat", "."]"""
    return TOKEN_RE.findall(text.lower())


def detokenize(tokens: List[str], capitalize_first: bool = True) -> str:
    """Tokens back to text: spaces between words, none before punctuation, capitals after a full stop."""
    out = ""
    capitalize = capitalize_first
    for tok in tokens:
        if tok in PUNCTUATION:
            out += tok
        else:
            word = tok.capitalize() if capitalize or tok == "i" else tok
            out += (" " if out else "") + word
        capitalize = tok in SENTENCE_END
    return out


class BigramModel:
    def __init__(self, text: str):
        tokens = ["."] + tokenize(text)  # a leading "." lets sentence starts be sampled after "."
        self.successors: Dict[str, Counter] = defaultdict(Counter)
        for current, following in zip(tokens, tokens[1:]):
            self.successors[current][following] += 1
        self.vocabulary = set(tokens)
        self.num_tokens = len(tokens)

    def knows(self, word: str) -> bool:
        return word in self.successors

    def next_token(self, previous: str, rng: random.Random, temperature: float) -> str:
        """Sample the word after `previous`; temperature < 1 favours the most frequent followers."""
        counts = self.successors.get(previous) or self.successors["."]
        words = sorted(counts)  # sorted, so the same seed always gives the same sample
        weights = [counts[w] ** (1.0 / max(temperature, 0.05)) for w in words]
        return rng.choices(words, weights=weights)[0]

    def generate(
        self, start: str, max_tokens: int, rng: random.Random, temperature: float = 1.0, stop_at_sentence_end: bool = False
    ) -> Iterator[str]:
        """Yield up to max_tokens tokens following `start`, one at a time."""
        previous = start
        for _ in range(max_tokens):
            previous = self.next_token(previous, rng, temperature)
            yield previous
            if stop_at_sentence_end and previous in SENTENCE_END:
                return

    def topic(self, text: str, rng: random.Random) -> Optional[str]:
        """A content word from `text` that the model knows, or None."""
        candidates = sorted({w for w in tokenize(text) if self.knows(w) and w not in STOPWORDS and w not in PUNCTUATION})
        return rng.choice(candidates) if candidates else None
