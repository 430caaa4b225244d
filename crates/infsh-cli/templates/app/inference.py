"""{{name}}: a multi-function inference app.

`setup` loads the model once; every function below shares it. Run one with
`infsh app run . --function reverse --input input_reverse.json`, list them with
`infsh app functions`, and try them all with `infsh app test`.
"""

import asyncio
import logging
from typing import AsyncGenerator

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput, BaseAppSetup
from pydantic import Field

log = logging.getLogger(__name__)


class AppSetup(BaseAppSetup):
    """Settings for `setup`; pass them with `--setup '{"greeting": "Hi"}'`."""

    greeting: str = Field(default="Hello", description="Word the model starts every reply with")


class RunInput(BaseAppInput):
    name: str = Field(description="Who to greet")


class RunOutput(BaseAppOutput):
    text: str = Field(description="The greeting")


class ReverseInput(BaseAppInput):
    text: str = Field(description="Text to reverse")


class ReverseOutput(BaseAppOutput):
    text: str = Field(description="The text, reversed word by word")


class StreamInput(BaseAppInput):
    text: str = Field(description="Text to spell out")
    delay: float = Field(default=0.05, ge=0, le=1, description="Seconds between snapshots")


class StreamOutput(BaseAppOutput):
    text: str = Field(description="The text so far")


class TinyModel:
    """Stands in for real weights: built once in setup, shared by every function."""

    def __init__(self, greeting: str):
        self.greeting = greeting

    def greet(self, name: str) -> str:
        return f"{self.greeting}, {name}!"


class App(BaseApp):
    async def setup(self, config: AppSetup):
        log.info("loading the model (once for all functions)")
        self.model = TinyModel(config.greeting)

    async def run(self, input_data: RunInput) -> RunOutput:
        """Greet someone with the loaded model."""
        return RunOutput(text=self.model.greet(input_data.name))

    async def reverse(self, input_data: ReverseInput) -> ReverseOutput:
        """Reverse the order of the words."""
        return ReverseOutput(text=" ".join(reversed(input_data.text.split())))

    async def stream(self, input_data: StreamInput) -> AsyncGenerator[StreamOutput, None]:
        """Spell the text out word by word; every snapshot holds the text so far."""
        words = []
        for word in input_data.text.split():
            words.append(word)
            yield StreamOutput(text=" ".join(words))
            await asyncio.sleep(input_data.delay)

    async def unload(self):
        self.model = None
