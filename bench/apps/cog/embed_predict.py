"""cog 0.23 / coglet: the embed benchmark's app (bench/embed.py): 32 texts
in, {"vectors": [[...]]} out (TableModel)."""
import os
import sys

from cog import BaseModel, BaseRunner

sys.path.insert(0, os.environ["EMBED_MODEL_DIR"])
from embed_model import TableModel  # noqa: E402


class Output(BaseModel):
    vectors: list[list[float]]


class Runner(BaseRunner):
    def setup(self) -> None:
        self.model = TableModel()

    def run(self, texts: list[str]) -> Output:
        return Output(vectors=self.model.encode(texts).tolist())
