"""cog 0.23 / coglet: the image benchmark's app (bench/image.py). A `Path`
input (the client sends a data URI, as cog's docs show), a `Path` output
(returned in the reply as a data URI when no upload URL is set)."""
import os
import sys
import tempfile

from cog import BaseRunner, Path

sys.path.insert(0, os.environ["IMAGE_LIB_DIR"])
from flip import flip_png  # noqa: E402


class Runner(BaseRunner):
    def setup(self) -> None:
        self.ready = True

    def run(self, image: Path) -> Path:
        out = os.path.join(tempfile.mkdtemp(prefix="flip-"), "flipped.png")
        flip_png(str(image), out)
        return Path(out)


class AsyncRunner(BaseRunner):
    """The same, `async def`: with COG_MAX_CONCURRENCY above 1, coglet queues
    concurrent predictions instead of answering 409 "at capacity" (the work
    itself still blocks its event loop: one at a time, as in Runner)."""

    def setup(self) -> None:
        self.ready = True

    async def run(self, image: Path) -> Path:
        out = os.path.join(tempfile.mkdtemp(prefix="flip-"), "flipped.png")
        flip_png(str(image), out)
        return Path(out)
