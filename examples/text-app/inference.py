"""text-app: a tiny language model with chat, completion and streaming functions.

`setup` trains a word bigram model on corpus.txt (shipped with the app) once
per worker; `chat`, `completion` and `stream` share it. Same input, same seed:
same text. Try it:

    infsh app run examples/text-app                                    # chat (default_function), with input.json
    infsh app run examples/text-app --function completion --input examples/text-app/input_completion.json
    infsh app run examples/text-app --function stream     --input examples/text-app/input_stream.json
"""
import asyncio
import os
import random
from typing import AsyncGenerator, List, Literal, Optional

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput, BaseAppSetup
from pydantic import BaseModel, Field

from .model import PUNCTUATION, SENTENCE_END, BigramModel, detokenize, tokenize

APP_DIR = os.path.dirname(os.path.abspath(__file__))


class AppSetup(BaseAppSetup):
    corpus_file: str = Field(default="corpus.txt", description="text to train on, relative to the app folder")


# ---- inputs and outputs -------------------------------------------------------

class Message(BaseModel):
    role: Literal["system", "user", "assistant"] = Field(description="who wrote the message")
    content: str = Field(description="the message text")


class ChatInput(BaseAppInput):
    messages: List[Message] = Field(min_length=1, description="the conversation so far, oldest first; the last one is usually from the user")
    seed: int = Field(default=0, description="random seed: the same conversation and seed give the same reply")
    max_tokens: int = Field(default=40, ge=1, le=200, description="longest reply, in tokens")
    temperature: float = Field(default=0.8, ge=0.05, le=2.0, description="lower is more predictable")


class ChatOutput(BaseAppOutput):
    reply: str = Field(description="the assistant's answer")
    topic: Optional[str] = Field(default=None, description="the word from the conversation that the reply starts from")


class CompletionInput(BaseAppInput):
    prompt: str = Field(description="text to continue")
    max_tokens: int = Field(default=30, ge=1, le=500, description="how many tokens to add")
    seed: int = Field(default=0, description="random seed: the same prompt and seed give the same text")
    temperature: float = Field(default=0.8, ge=0.05, le=2.0, description="lower is more predictable")


class CompletionOutput(BaseAppOutput):
    text: str = Field(description="the continuation (without the prompt)")
    tokens: int = Field(description="number of tokens generated")


class StreamInput(CompletionInput):
    tokens_per_chunk: int = Field(default=3, ge=1, le=50, description="tokens generated between two snapshots")


class StreamOutput(BaseAppOutput):
    text: str = Field(description="the continuation so far")
    tokens: int = Field(description="number of tokens generated so far")
    finished: bool = Field(default=False, description="true on the last snapshot")


# ---- the app ------------------------------------------------------------------

class App(BaseApp):
    async def setup(self, config: AppSetup):
        """Train the model once; every function below shares it."""
        path = os.path.join(APP_DIR, config.corpus_file)
        print(f"loading model... (training on {config.corpus_file})")
        with open(path, encoding="utf-8") as f:
            self.model = BigramModel(f.read())
        print(f"model ready: {self.model.num_tokens} tokens, {len(self.model.vocabulary)} distinct")

    def _continue(self, prompt: str, max_tokens: int, seed: int, temperature: float):
        """The tokens that continue `prompt`: completion and stream both use this, so they agree."""
        rng = random.Random(f"{seed}:{prompt}")  # string seeds are stable across runs
        known = [t for t in tokenize(prompt) if self.model.knows(t)]
        start = known[-1] if known else "."
        return self.model.generate(start, max_tokens, rng, temperature)

    @staticmethod
    def _join(prompt: str, tokens: List[str]) -> str:
        """Continuation text, spaced to follow the prompt."""
        starts_sentence = not prompt.strip() or prompt.rstrip().endswith((".", "!", "?"))
        text = detokenize(tokens, capitalize_first=starts_sentence)
        needs_space = bool(text) and bool(prompt) and not prompt[-1].isspace() and tokens[0] not in PUNCTUATION
        return " " + text if needs_space else text

    async def chat(self, input_data: ChatInput) -> ChatOutput:
        """Reply to a conversation; the reply depends on the whole history."""
        transcript = "\n".join(f"{m.role}: {m.content}" for m in input_data.messages)
        rng = random.Random(f"{input_data.seed}:{transcript}")

        # The topic: a word the model knows from the latest user message that
        # has one, so a vague follow-up ("tell me more") stays on the subject.
        topic = None
        for message in reversed(input_data.messages):
            if message.role == "user":
                topic = self.model.topic(message.content, rng)
                if topic:
                    break

        tokens: List[str] = []
        if topic:
            # "the cat ..." reads better than "cat ...", when the corpus says so
            tokens = ["the", topic] if self.model.successors["the"][topic] else [topic]
        tokens += self.model.generate(
            topic or ".", max(0, input_data.max_tokens - len(tokens)), rng, input_data.temperature, stop_at_sentence_end=True
        )
        # ran out of tokens mid-sentence: end it anyway
        while tokens and tokens[-1] in PUNCTUATION - SENTENCE_END:
            tokens.pop()
        if tokens and tokens[-1] not in SENTENCE_END:
            tokens.append(".")
        return ChatOutput(reply=detokenize(tokens), topic=topic)

    async def completion(self, input_data: CompletionInput) -> CompletionOutput:
        """Continue a text."""
        tokens = list(self._continue(input_data.prompt, input_data.max_tokens, input_data.seed, input_data.temperature))
        return CompletionOutput(text=self._join(input_data.prompt, tokens), tokens=len(tokens))

    async def stream(self, input_data: StreamInput) -> AsyncGenerator[StreamOutput, None]:
        """Continue a text, streaming: each snapshot holds the whole text so far."""
        tokens: List[str] = []
        for token in self._continue(input_data.prompt, input_data.max_tokens, input_data.seed, input_data.temperature):
            tokens.append(token)
            if len(tokens) % input_data.tokens_per_chunk == 0 and len(tokens) < input_data.max_tokens:
                yield StreamOutput(text=self._join(input_data.prompt, tokens), tokens=len(tokens))
                await asyncio.sleep(0.01)  # a real model takes time per token
        yield StreamOutput(text=self._join(input_data.prompt, tokens), tokens=len(tokens), finished=True)
