"""The numpy "models" of the embed and batching benchmarks, shared by every
system's app (each imports this file from $EMBED_MODEL_DIR), so all of them
run the same code on the same weights.

- ``TableModel`` (the embed benchmark): a text is the mean of its words'
  rows in a 8192 x 1024 float32 table, normalized: cheap, so what is
  measured is the payload's way (32 texts in, 32 x 1024 floats out as JSON).
- ``MatrixModel`` (the batching benchmark): the same words summed into a
  4096-wide feature row, then one matrix product with a 4096 x 1024 float32
  weight (16 MiB) and a tanh. One text at a time reads the whole weight for
  one row; a batch reads it once for all its rows: the GPU's reason to
  batch, on a CPU.
"""
import zlib

import numpy as np

DIM = 1024
VOCAB = 8192
HIDDEN = 4096


def _ids(text, vocab):
    return [zlib.crc32(w.encode()) % vocab for w in text.split()] or [0]


class TableModel:
    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.table = rng.standard_normal((VOCAB, DIM), dtype=np.float32)

    def encode(self, texts):
        """(len(texts), 1024) float32."""
        out = np.empty((len(texts), DIM), np.float32)
        for i, text in enumerate(texts):
            v = self.table[_ids(text, VOCAB)].mean(axis=0)
            out[i] = v / (np.linalg.norm(v) + 1e-6)
        return out


class MatrixModel:
    def __init__(self, seed=1):
        rng = np.random.default_rng(seed)
        self.table = rng.standard_normal((VOCAB, HIDDEN), dtype=np.float32)
        self.w = rng.standard_normal((HIDDEN, DIM), dtype=np.float32) / np.float32(np.sqrt(HIDDEN))

    def encode(self, texts):
        """(len(texts), 1024) float32: one (n x 4096) @ (4096 x 1024) product."""
        x = np.stack([self.table[_ids(t, VOCAB)].sum(axis=0) for t in texts])
        return np.tanh(x @ self.w)
