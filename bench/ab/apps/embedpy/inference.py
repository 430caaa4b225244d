import random
import struct
import zlib

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput

DIM = 1024


class TextsInput(BaseAppInput):
    texts: list[str]


class VectorsOutput(BaseAppOutput):
    vectors: list[list[float]]


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


class App(BaseApp):
    async def setup(self):
        rng = random.Random(0)
        self.rows = [[f32(rng.gauss(0, 0.03)) for _ in range(DIM)] for _ in range(256)]

    def embed(self, input: TextsInput) -> VectorsOutput:
        return VectorsOutput(vectors=[self.rows[zlib.crc32(t.encode()) % 256] for t in input.texts])
