"""The image benchmark's app for infsh (bench/image.py): a PNG File in (an
uploaded file's uri), the PNG flipped top to bottom out, written in the
call's scratch folder (where tempfile points during a call), which the
server moves into its file store. With IMAGE_OUT_DIR set (bench/image.py's
"copied" variant) the output is written there instead, outside the scratch
folder, and the server copies it: the byte path before the move existed."""
import os
import sys
import tempfile

from inferencesh import BaseApp, BaseAppInput, BaseAppOutput, File

sys.path.insert(0, os.environ["IMAGE_LIB_DIR"])
from flip import flip_png  # noqa: E402


class ImageInput(BaseAppInput):
    image: File


class ImageOutput(BaseAppOutput):
    image: File


class App(BaseApp):
    async def setup(self):
        pass

    def flip(self, input: ImageInput) -> ImageOutput:
        out = os.path.join(tempfile.mkdtemp(prefix="flip-", dir=os.environ.get("IMAGE_OUT_DIR")), "flipped.png")
        flip_png(input.image.path, out)
        return ImageOutput(image=File(path=out))
