"""BentoML: the image benchmark's app (bench/image.py). As BentoML's docs
show files: a `Path` input (multipart/form-data upload, field `image`) and
a `Path` output with its content type (the reply's body is the file)."""
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import bentoml
from bentoml.validators import ContentType

sys.path.insert(0, os.environ["IMAGE_LIB_DIR"])
from flip import flip_png  # noqa: E402


@bentoml.service(workers=1)
class Image:
    @bentoml.api
    def flip(self, image: Path) -> Annotated[Path, ContentType("image/png")]:
        out = os.path.join(tempfile.mkdtemp(prefix="flip-"), "flipped.png")
        flip_png(str(image), out)
        return Path(out)
