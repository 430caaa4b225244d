"""image-app: one model, four functions.

`setup` builds the model once per worker; `run`, `generate`, `upscale` and
`inpaint` all use that same instance. Try it:

    infsh app run examples/image-app                                   # run, with input.json
    infsh app run examples/image-app --function generate --input examples/image-app/input_generate.json
    infsh app run examples/image-app --function upscale  --input examples/image-app/input_upscale.json
    infsh app run examples/image-app --function inpaint  --input examples/image-app/input_inpaint.json
    infsh app run examples/image-app --function generate --input '{"prompt": "a red fox"}' --setup '{"seed": 7}'
"""
import os
import tempfile
import time
from typing import List, Literal

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput, BaseAppSetup, File
from PIL import Image
from pydantic import Field

# Helpers live next to inference.py and are imported relatively: the runtime
# imports the app folder as a package.
from . import model as model_module
from .model import TinyImageModel


# ---- setup config -----------------------------------------------------------
# Sent once per worker (`--setup '{"seed": 7}'`); a new config means a new setup.

class AppSetup(BaseAppSetup):
    seed: int = Field(default=42, description="seed the model's weights are generated from")
    palette_size: int = Field(default=16, ge=2, le=256, description="number of colours in the model's palette")


# ---- inputs and outputs -------------------------------------------------------
# Each function has its own input and output model. Field descriptions show up
# in the function's schema (`infsh app functions`).

class ImageOutput(BaseAppOutput):
    image: File = Field(description="the resulting PNG image")
    width: int = Field(description="width of the image in pixels")
    height: int = Field(description="height of the image in pixels")


class RunInput(BaseAppInput):
    image: File = Field(description="image to repaint", json_schema_extra={"contentMediaType": "image/*"})
    strength: float = Field(default=0.8, ge=0.0, le=1.0, description="0 keeps the image, 1 fully repaints it")


class RunOutput(ImageOutput):
    dominant_colors: List[str] = Field(description="the three most frequent colours of the result, as #rrggbb")


class GenerateInput(BaseAppInput):
    prompt: str = Field(description="what to draw; the same prompt always gives the same image")
    width: int = Field(default=256, ge=16, le=1024, description="image width in pixels")
    height: int = Field(default=256, ge=16, le=1024, description="image height in pixels")


class UpscaleInput(BaseAppInput):
    image: File = Field(description="image to upscale", json_schema_extra={"contentMediaType": "image/*"})
    scale: Literal[2, 4] = Field(default=2, description="upscaling factor")


class InpaintInput(BaseAppInput):
    image: File = Field(description="image to repair", json_schema_extra={"contentMediaType": "image/*"})
    mask: File = Field(
        description="mask of the same size: white where the image is to be filled in",
        json_schema_extra={"contentMediaType": "image/*"},
    )
    prompt: str = Field(default="", description="optional: what to fill the hole with")


# ---- the app ------------------------------------------------------------------

def save_png(image: Image.Image, name: str) -> File:
    """Write an output image into a fresh temp folder and return it as a File.

    Returning File(path=...) is all an app does: the runtime stores the file
    and hands the caller a URL (or, locally, a copy). Under infsh, tempfile's
    folder is the call's scratch folder, removed once the output is stored,
    so no image-app-* folder is left in /tmp (docs/writing-apps.md, "Files").
    """
    path = os.path.join(tempfile.mkdtemp(prefix="image-app-"), name)
    image.save(path, format="PNG")
    return File(path=path)


class App(BaseApp):
    async def setup(self, config: AppSetup):
        """Load the model once; every function below shares it."""
        print(f"loading model... (seed={config.seed}, palette_size={config.palette_size})")
        started = time.perf_counter()
        self.model = TinyImageModel(seed=config.seed, palette_size=config.palette_size)
        print(f"model loaded in {time.perf_counter() - started:.2f}s (loads in this process: {model_module.LOAD_COUNT})")

    async def run(self, input_data: RunInput) -> RunOutput:
        """Repaint an image in the model's colour palette."""
        image = Image.open(input_data.image.path)
        result = self.model.stylize(image, input_data.strength)
        return RunOutput(
            image=save_png(result, "stylized.png"),
            width=result.width,
            height=result.height,
            dominant_colors=self.model.dominant_colors(result),
        )

    async def generate(self, input_data: GenerateInput) -> ImageOutput:
        """Generate an image from a text prompt (deterministic: same prompt, same image)."""
        image = self.model.generate(input_data.prompt, input_data.width, input_data.height)
        return ImageOutput(image=save_png(image, "generated.png"), width=image.width, height=image.height)

    async def upscale(self, input_data: UpscaleInput) -> ImageOutput:
        """Upscale an image 2x or 4x with the model's sharpening filter."""
        image = self.model.upscale(Image.open(input_data.image.path), input_data.scale)
        return ImageOutput(image=save_png(image, "upscaled.png"), width=image.width, height=image.height)

    async def inpaint(self, input_data: InpaintInput) -> ImageOutput:
        """Fill the masked part of an image."""
        image = Image.open(input_data.image.path)
        mask = Image.open(input_data.mask.path)
        result = self.model.inpaint(image, mask, input_data.prompt)
        return ImageOutput(image=save_png(result, "inpainted.png"), width=result.width, height=result.height)

    async def unload(self):
        """Called once at shutdown: release the model."""
        self.model = None
