"""gpu-app: one model on the GPU, four functions.

`setup` builds a byte-level transformer with random, seeded weights directly
on the GPU (~0.45 GB in fp16 at size "full"; nothing is downloaded) and
`embed`, `classify`, `score` and the streaming `generate` all use that one
instance: one copy of the weights, one CUDA context, one setup. Without CUDA
it builds the "tiny" size on the CPU, so it runs anywhere torch does.

    infsh app run examples/gpu-app                                # embed, with input.json
    infsh app run examples/gpu-app --function generate            # streams snapshots
    infsh app test examples/gpu-app                               # every function, one setup
    infsh app run examples/gpu-app --setup '{"size": "small"}' -f score

The size can also come from the environment, GPU_APP_SIZE=tiny|small|full
(what bench/gpu.sh uses to test on a CPU); a setup config other than "auto"
wins over it.
"""
import asyncio
import os
from typing import AsyncGenerator, Dict, List, Literal

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput, BaseAppSetup
from pydantic import Field

from .model import Model, cosine_scores, fingerprint


class AppSetup(BaseAppSetup):
    size: Literal["auto", "tiny", "small", "full"] = Field(
        default="auto", description="model size; auto: full on a GPU, tiny on a CPU (or GPU_APP_SIZE)")
    seed: int = Field(default=0, description="seed the random weights are drawn from")


class EmbedInput(BaseAppInput):
    text: str = Field(description="text to embed")


class EmbedOutput(BaseAppOutput):
    dim: int = Field(description="length of the embedding")
    head: List[float] = Field(description="the first 8 values of the (L2-normalised) embedding")
    fingerprint: float = Field(description="a weighted sum of every value: equal embeddings, equal fingerprints")
    device: str


class ClassifyInput(BaseAppInput):
    text: str = Field(description="text to classify")
    labels: List[str] = Field(default=["positive", "negative", "neutral"], min_length=1,
                              description="candidate labels, compared with the text by embedding similarity")


class ClassifyOutput(BaseAppOutput):
    label: str = Field(description="the most similar label")
    scores: Dict[str, float] = Field(description="softmax of the similarities, per label")


class ScoreInput(BaseAppInput):
    text: str = Field(description="text to score")


class ScoreOutput(BaseAppOutput):
    log_likelihood: float = Field(description="mean log-probability per byte under the model")
    tokens: int


class GenerateInput(BaseAppInput):
    prompt: str = Field(description="text to continue")
    max_tokens: int = Field(default=16, ge=1, le=256, description="bytes to generate (greedy)")


class GenerateOutput(BaseAppOutput):
    text: str = Field(description="the continuation so far")
    tokens: int = Field(description="bytes generated so far")


class App(BaseApp):
    async def setup(self, config: AppSetup):
        """Build the model once per worker; every function shares it."""
        size = config.size
        if size == "auto":
            size = os.environ.get("GPU_APP_SIZE", "auto")
        self.model = Model(size, config.seed)
        info = self.model.describe()
        print(f"model ready in {self.model.build_seconds:.2f}s: {info}", flush=True)

    def embed(self, input_data: EmbedInput) -> EmbedOutput:
        """Embed a text (mean-pooled hidden state)."""
        vec = self.model.embed(input_data.text)
        return EmbedOutput(dim=vec.numel(), head=[round(float(v), 6) for v in vec[:8]],
                           fingerprint=fingerprint(vec), device=str(self.model.device))

    def classify(self, input_data: ClassifyInput) -> ClassifyOutput:
        """Pick the label whose embedding is closest to the text's."""
        query = self.model.embed(input_data.text)
        scores = cosine_scores(query, [self.model.embed(label) for label in input_data.labels])
        best = max(range(len(scores)), key=scores.__getitem__)
        return ClassifyOutput(label=input_data.labels[best], scores=dict(zip(input_data.labels, scores)))

    def score(self, input_data: ScoreInput) -> ScoreOutput:
        """Mean log-likelihood of a text under the model."""
        ll, n = self.model.log_likelihood(input_data.text)
        return ScoreOutput(log_likelihood=round(ll, 6), tokens=n)

    async def generate(self, input_data: GenerateInput) -> AsyncGenerator[GenerateOutput, None]:
        """Continue a prompt greedily, streaming: each snapshot is the text so far."""
        ids = self.model.ids(input_data.prompt)
        out: List[str] = []
        for _ in range(input_data.max_tokens):
            # The forward pass runs off the event loop, so the worker keeps
            # answering (cancel, other calls) while the GPU works.
            tok = await asyncio.to_thread(self.model.next_token, ids)
            out.append(chr(tok))
            ids = self._append(ids, tok)
            yield GenerateOutput(text="".join(out), tokens=len(out))

    @staticmethod
    def _append(ids, tok):
        import torch

        return torch.cat([ids, torch.tensor([[tok]], dtype=ids.dtype, device=ids.device)], dim=1)

    async def unload(self):
        """Free the weights (and the GPU memory they held)."""
        self.model = None
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:
            pass
