"""The tokens benchmark on cog 0.23 / coglet: a streaming `run` yields n
tokens (cog's ConcatenateIterator: clients concatenate the outputs), sent
as SSE `output` events to a client that asks with `Accept: text/event-stream`.

coglet streams only when the model's OpenAPI schema says so
(`x-cog-streaming`), which `cog build` writes to .cog/openapi_schema.json
from the `@streaming` mark; there is no `cog build` here, so that file is
committed beside this one.
"""
from cog import BaseRunner, ConcatenateIterator, streaming


def token(i: int) -> str:
    return f"w{i:04d} "


class Runner(BaseRunner):
    def setup(self) -> None:
        self.ready = True

    @streaming
    def run(self, n: int = 1000) -> ConcatenateIterator[str]:
        for i in range(n):
            yield token(i)


class AsyncRunner(BaseRunner):
    def setup(self) -> None:
        self.ready = True

    @streaming
    async def run(self, n: int = 1000) -> ConcatenateIterator[str]:
        for i in range(n):
            yield token(i)
