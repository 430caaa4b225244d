"""The benchmark's trivial app (docs/performance.md: the same app on every system).

`run` (async def) and `run_sync` (plain def) upper-case the text; `lower` is
the second function of the same app; `stream` yields three snapshots (the
first at once), for the time-to-first-snapshot figure; `nap` sleeps, to keep
a replica busy while a second one starts.
"""
import asyncio
import time
from typing import AsyncGenerator

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput


class TextInput(BaseAppInput):
    text: str


class TextOutput(BaseAppOutput):
    text: str


class NapInput(BaseAppInput):
    seconds: float = 1.0


class NapOutput(BaseAppOutput):
    slept: float


class App(BaseApp):
    async def setup(self):
        self.ready = True

    async def run(self, input_data: TextInput) -> TextOutput:
        """Upper-case the text (async def)."""
        return TextOutput(text=input_data.text.upper())

    def run_sync(self, input_data: TextInput) -> TextOutput:
        """Upper-case the text (plain def)."""
        return TextOutput(text=input_data.text.upper())

    async def lower(self, input_data: TextInput) -> TextOutput:
        """Lower-case the text (the app's second function)."""
        return TextOutput(text=input_data.text.lower())

    async def stream(self, input_data: TextInput) -> AsyncGenerator[TextOutput, None]:
        """Upper-case the text word by word; the first snapshot comes at once."""
        words = input_data.text.upper().split()
        for i in range(len(words)):
            yield TextOutput(text=" ".join(words[: i + 1]))
            await asyncio.sleep(0.01)

    def nap(self, input_data: NapInput) -> NapOutput:
        """Sleep (keeps this replica busy)."""
        time.sleep(input_data.seconds)
        return NapOutput(slept=input_data.seconds)
