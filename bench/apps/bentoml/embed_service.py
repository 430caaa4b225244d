"""BentoML: the embed benchmark's app (bench/embed.py): POST /embed takes
{"texts": [...]} and answers {"vectors": [[...]]} (TableModel)."""
import os
import sys

import bentoml

sys.path.insert(0, os.environ["EMBED_MODEL_DIR"])
from embed_model import TableModel  # noqa: E402


@bentoml.service(workers=1)
class Embed:
    def __init__(self) -> None:
        self.model = TableModel()

    @bentoml.api
    def embed(self, texts: list[str]) -> dict:
        return {"vectors": self.model.encode(texts).tolist()}
