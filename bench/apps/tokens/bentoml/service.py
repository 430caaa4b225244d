"""The tokens benchmark on BentoML: an async generator API streams n tokens
(BentoML's streaming docs: the response is the concatenated text)."""
from typing import AsyncGenerator

import bentoml


def token(i: int) -> str:
    return f"w{i:04d} "


@bentoml.service(workers=1)
class Tokens:
    @bentoml.api
    async def generate(self, n: int = 1000) -> AsyncGenerator[str, None]:
        for i in range(n):
            yield token(i)
