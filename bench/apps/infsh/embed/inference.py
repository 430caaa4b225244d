"""The embed benchmark's app for infsh (bench/embed.py).

- embed: 32 texts in, 32 x 1024 float32 vectors out (TableModel);
- embed_one: one text in, one vector out (MatrixModel), unbatched;
- embed_batched: the same, batched (inf.yml: up to 32 calls, 5 ms).
"""
import os
import sys

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput

sys.path.insert(0, os.environ["EMBED_MODEL_DIR"])
from embed_model import MatrixModel, TableModel  # noqa: E402


class TextsInput(BaseAppInput):
    texts: list[str]


class VectorsOutput(BaseAppOutput):
    vectors: list[list[float]]


class TextInput(BaseAppInput):
    text: str


class VectorOutput(BaseAppOutput):
    vector: list[float]


class App(BaseApp):
    async def setup(self):
        self.table = TableModel()
        self.matrix = MatrixModel()

    def embed(self, input: TextsInput) -> VectorsOutput:
        return VectorsOutput(vectors=self.table.encode(input.texts).tolist())

    def embed_one(self, input: TextInput) -> VectorOutput:
        return VectorOutput(vector=self.matrix.encode([input.text])[0].tolist())

    def embed_batched(self, inputs: list[TextInput]) -> list[VectorOutput]:
        vectors = self.matrix.encode([i.text for i in inputs])
        return [VectorOutput(vector=v) for v in vectors.tolist()]
