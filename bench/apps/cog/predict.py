"""cog 0.23 / coglet: the benchmark's trivial app. cog serves one function per
model (`run`), so there is no second function here."""
from cog import BaseModel, BaseRunner


class Output(BaseModel):
    text: str


class Runner(BaseRunner):
    def setup(self) -> None:
        self.ready = True

    def run(self, text: str) -> Output:
        return Output(text=text.upper())


class AsyncRunner(BaseRunner):
    def setup(self) -> None:
        self.ready = True

    async def run(self, text: str) -> Output:
        return Output(text=text.upper())
