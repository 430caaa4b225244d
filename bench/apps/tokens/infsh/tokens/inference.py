"""The tokens benchmark on infsh: an LLM-shaped streaming function.

Each yield is the whole output so far (the inference.sh way: `response`
grows by one token); the server sends clients that merge deltas only the
appended token.
"""
from typing import AsyncGenerator

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput


class TokensInput(BaseAppInput):
    n: int = 1000


class TokensOutput(BaseAppOutput):
    response: str


def token(i: int) -> str:
    return f"w{i:04d} "


class App(BaseApp):
    async def run(self, input_data: TokensInput) -> AsyncGenerator[TokensOutput, None]:
        text = ""
        for i in range(input_data.n):
            text += token(i)
            yield TokensOutput(response=text)
