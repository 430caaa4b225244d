"""The shared model: a byte-level decoder-only transformer with random,
seeded weights (nothing is downloaded). Sizes:

    tiny   dim 64,   2 layers      ~0.1 M parameters  (CPU tests, CI)
    small  dim 512,  4 layers      ~13 M
    full   dim 1536, 8 layers      ~227 M  (~0.45 GB in fp16 on a GPU)

Tokens are the bytes of the UTF-8 text (vocabulary 256); generated tokens
are shown as printable ASCII, so random weights still give readable text.
"""
import math
import time
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

SIZES = {"tiny": (64, 2, 4), "small": (512, 4, 8), "full": (1536, 8, 16)}  # dim, layers, heads
VOCAB = 256
MAX_LEN = 512


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, 4 * dim)
        self.down = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.down(F.gelu(self.up(self.ln2(x))))


class ByteLM(nn.Module):
    def __init__(self, dim: int, layers: int, heads: int):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, dim)
        self.pos = nn.Embedding(MAX_LEN, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, VOCAB, bias=False)

    def hidden(self, ids: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.tok(ids) + self.pos(pos)
        for block in self.blocks:
            x = block(x)
        return self.ln(x)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(ids))


def pick_size(size: str) -> str:
    if size == "auto":
        return "full" if torch.cuda.is_available() else "tiny"
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; one of auto, {', '.join(SIZES)}")
    return size


class Model:
    """The model, its device, and the operations every function shares."""

    def __init__(self, size: str, seed: int, device: str = "auto"):
        t = time.perf_counter()
        self.size = pick_size(size)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        dim, layers, heads = SIZES[self.size]
        torch.manual_seed(seed)
        # Built directly on the device in its dtype: no CPU copy, no transfer.
        with torch.device(self.device):
            self.net = ByteLM(dim, layers, heads).to(self.dtype).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.params = sum(p.numel() for p in self.net.parameters())
        self.bytes = sum(p.numel() * p.element_size() for p in self.net.parameters())
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.build_seconds = time.perf_counter() - t

    def ids(self, text: str) -> torch.Tensor:
        data = list(text.encode("utf-8")[: MAX_LEN - 64]) or [32]
        return torch.tensor([data], dtype=torch.long, device=self.device)

    @torch.inference_mode()
    def embed(self, text: str) -> torch.Tensor:
        """Mean-pooled last hidden state, L2-normalised, as float32 on the CPU."""
        h = self.net.hidden(self.ids(text)).float().mean(dim=1)[0]
        return F.normalize(h, dim=0).cpu()

    @torch.inference_mode()
    def log_likelihood(self, text: str) -> Tuple[float, int]:
        """Mean log-probability of each byte given the ones before it."""
        ids = self.ids(text)
        if ids.shape[1] < 2:
            return 0.0, int(ids.shape[1])
        logits = self.net(ids[:, :-1]).float()
        lp = F.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1))
        return float(lp.mean()), int(ids.shape[1])

    @torch.inference_mode()
    def next_token(self, ids: torch.Tensor) -> int:
        """Greedy: the most likely next byte, restricted to printable ASCII."""
        logits = self.net(ids[:, -(MAX_LEN - 1):])[0, -1].float()
        return 32 + int(torch.argmax(logits[32:127]))

    def describe(self) -> dict:
        dim, layers, heads = SIZES[self.size]
        return {"size": self.size, "device": str(self.device), "dtype": str(self.dtype).replace("torch.", ""),
                "dim": dim, "layers": layers, "parameters": self.params, "weights_mib": round(self.bytes / 2**20, 1)}


def cosine_scores(query: torch.Tensor, others: List[torch.Tensor]) -> List[float]:
    sims = torch.stack([torch.dot(query, o) for o in others])
    return [round(float(s), 6) for s in torch.softmax(sims * 10, dim=0)]


def fingerprint(vec: torch.Tensor) -> float:
    """A number that changes with every value of the vector (determinism checks)."""
    w = torch.arange(1, vec.numel() + 1, dtype=torch.float32)
    return round(float((vec * w).sum()) / math.sqrt(vec.numel()), 6)
