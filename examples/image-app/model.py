"""TinyImageModel: a stand-in for a real image model.

A real app would load weights here (a diffusion pipeline, an upscaler ...).
This one "loads" a small bank of parameters generated from a seed, so the
example runs on any CPU with nothing to download, yet behaves like a model:
it is built once in setup, takes a moment to load, and every function of the
app uses the same instance.
"""
import hashlib
import random
import time
from typing import List, Tuple

from PIL import Image, ImageDraw, ImageFilter, ImageOps

RGB = Tuple[int, int, int]

# How many models this process has built. Setup runs once per worker, so this
# stays at 1 however many functions are called.
LOAD_COUNT = 0


class TinyImageModel:
    def __init__(self, seed: int = 42, palette_size: int = 16, tile_size: int = 32, n_tiles: int = 8):
        global LOAD_COUNT
        LOAD_COUNT += 1
        rng = random.Random(seed)

        # "weights" 1: a colour palette
        self.palette: List[RGB] = [
            (rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(palette_size)
        ]
        # "weights" 2: a bank of grayscale noise tiles used as texture
        self.noise_bank: List[Image.Image] = [
            Image.frombytes("L", (tile_size, tile_size), bytes(rng.randrange(256) for _ in range(tile_size * tile_size)))
            for _ in range(n_tiles)
        ]
        # "weights" 3: a 3x3 sharpening kernel applied after upscaling
        a = 0.15 + 0.2 * rng.random()
        self.sharpen = ImageFilter.Kernel((3, 3), [0, -a, 0, -a, 1 + 4 * a, -a, 0, -a, 0], scale=1)

        time.sleep(0.2)  # pretend that loading takes a while

    # ---- helpers -----------------------------------------------------------

    def _texture(self, index: int, size: Tuple[int, int]) -> Image.Image:
        """A noise tile from the bank, repeated to cover `size`, softened."""
        tile = self.noise_bank[index % len(self.noise_bank)]
        canvas = Image.new("L", size)
        for x in range(0, size[0], tile.width):
            for y in range(0, size[1], tile.height):
                canvas.paste(tile, (x, y))
        return canvas.filter(ImageFilter.GaussianBlur(1.5))

    def _palette_image(self) -> Image.Image:
        """The palette as a "P" image, for Image.quantize."""
        flat = [c for rgb in self.palette for c in rgb]
        flat += flat[:3] * (256 - len(self.palette))  # pad to 256 entries
        pal = Image.new("P", (1, 1))
        pal.putpalette(flat)
        return pal

    # ---- what the app's functions call ------------------------------------

    def generate(self, prompt: str, width: int, height: int) -> Image.Image:
        """An image that depends only on the prompt (and the model's seed)."""
        digest = hashlib.sha256(prompt.encode("utf-8")).digest()
        c1 = self.palette[digest[0] % len(self.palette)]
        c2 = self.palette[digest[1] % len(self.palette)]

        # background: a gradient between two palette colours, at a prompt-chosen angle
        # (rotate a 512px gradient and keep its middle, so no corner is left empty)
        gradient = Image.linear_gradient("L").resize((512, 512)).rotate(digest[2] * 360 / 256)
        gradient = gradient.crop((128, 128, 384, 384)).resize((width, height))
        image = ImageOps.colorize(gradient, c1, c2)

        # texture from the noise bank
        texture = ImageOps.colorize(self._texture(digest[3], (width, height)), (0, 0, 0), (255, 255, 255))
        image = Image.blend(image, texture, 0.15)

        # a few shapes whose colour, place and size come from the prompt hash
        draw = ImageDraw.Draw(image)
        for i in range(3):
            b = digest[4 + 4 * i : 8 + 4 * i]
            cx, cy = b[0] * width // 256, b[1] * height // 256
            r = 4 + b[2] * min(width, height) // 1024
            color = self.palette[b[3] % len(self.palette)]
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=color)
        return image.filter(ImageFilter.SMOOTH)

    def upscale(self, image: Image.Image, factor: int) -> Image.Image:
        """Resize by `factor` with Lanczos, then sharpen with the model's kernel."""
        image = image.convert("RGB")
        big = image.resize((image.width * factor, image.height * factor), Image.Resampling.LANCZOS)
        return big.filter(self.sharpen)

    def inpaint(self, image: Image.Image, mask: Image.Image, prompt: str = "") -> Image.Image:
        """Fill the white part of `mask` with a blur of the surroundings plus generated texture."""
        image = image.convert("RGB")
        mask = mask.convert("L").resize(image.size)
        # what is around the hole, smeared into it
        fill = image.filter(ImageFilter.GaussianBlur(max(image.size) / 16))
        if prompt:
            fill = Image.blend(fill, self.generate(prompt, *image.size), 0.35)
        # a soft mask edge so the fill blends in
        soft = mask.filter(ImageFilter.GaussianBlur(2))
        return Image.composite(fill, image, soft)

    def stylize(self, image: Image.Image, strength: float) -> Image.Image:
        """Repaint the image in the model's palette; strength 0 keeps it, 1 fully repaints."""
        image = image.convert("RGB")
        painted = image.quantize(palette=self._palette_image(), dither=Image.Dither.NONE).convert("RGB")
        return Image.blend(image, painted, strength)

    def dominant_colors(self, image: Image.Image, n: int = 3) -> List[str]:
        """The n most frequent colours of an image, as #rrggbb."""
        small = image.convert("RGB").resize((32, 32))
        counts = sorted(small.getcolors(32 * 32), reverse=True)
        return ["#%02x%02x%02x" % rgb for _, rgb in counts[:n]]
