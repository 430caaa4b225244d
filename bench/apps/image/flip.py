"""The image benchmark's work, the same for every system (bench/image.py):
decode a PNG, flip it top to bottom, encode it as PNG again. Pillow;
compress_level 0 so that the encoder is as small a part of the call as it
can be (the input is noise: every level gives ~1 MB anyway)."""
from PIL import Image


def flip_png(src, dst):
    """src and dst: a path or a binary file object."""
    with Image.open(src) as img:
        img.transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(dst, format="PNG", compress_level=0)
