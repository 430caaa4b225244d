"""Draws the sample images used by the example inputs (run once; the PNGs are committed).

    python samples/make_samples.py
"""
import os

from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE = 96


def cat() -> Image.Image:
    img = Image.new("RGB", (SIZE, SIZE), (186, 220, 240))
    d = ImageDraw.Draw(img)
    d.polygon([(18, 40), (26, 8), (44, 28)], fill=(230, 140, 60))  # left ear
    d.polygon([(78, 40), (70, 8), (52, 28)], fill=(230, 140, 60))  # right ear
    d.ellipse((14, 20, 82, 84), fill=(240, 160, 70))  # head
    d.ellipse((30, 40, 42, 54), fill=(90, 170, 80))  # eyes
    d.ellipse((54, 40, 66, 54), fill=(90, 170, 80))
    d.ellipse((34, 44, 38, 52), fill=(20, 20, 20))
    d.ellipse((58, 44, 62, 52), fill=(20, 20, 20))
    d.polygon([(44, 60), (52, 60), (48, 66)], fill=(230, 110, 140))  # nose
    for dy in (-3, 1, 5):  # whiskers
        d.line((20, 62 + dy, 40, 64), fill=(60, 40, 30))
        d.line((76, 62 + dy, 56, 64), fill=(60, 40, 30))
    return img


def mask() -> Image.Image:
    """White over the cat's right eye: the part inpaint fills in."""
    img = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(img).ellipse((50, 36, 70, 58), fill=255)
    return img


if __name__ == "__main__":
    cat().save(os.path.join(HERE, "cat.png"), optimize=True)
    mask().save(os.path.join(HERE, "mask.png"), optimize=True)
