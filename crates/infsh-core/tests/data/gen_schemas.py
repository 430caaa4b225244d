"""Regenerates the pydantic test data of infsh-core.

    /work/main/.venv/bin/python crates/infsh-core/tests/data/gen_schemas.py

Writes, next to this file:
- functions_schema.json: a functions_schema.json as the SDK's tooling writes it
  (keys sorted; each entry {description, input_schema, output_schema}) for
  models covering nested models, lists, dicts, Optional, Literal, Enum,
  constraints, tagged unions, extra="forbid", and File fields;
- validation_cases.json: inputs with pydantic's verdict on each, so the Rust
  validator can be checked against the authority. Cases marked "lax" are ones
  pydantic accepts only by coercion (a JSON type mismatch), which infsh
  deliberately rejects.
"""
import enum
import json
import os
import tempfile
from pathlib import Path
from typing import Dict, List, Literal, Optional, Union

os.environ.setdefault("FILE_CACHE_DIR", tempfile.mkdtemp())

from inferencesh import BaseAppInput, BaseAppOutput, File  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, ValidationError  # noqa: E402

HERE = Path(__file__).parent


class Style(str, enum.Enum):
    photo = "photo"
    anime = "anime"


class Region(BaseModel):
    x: int = Field(ge=0)
    y: int = Field(ge=0)
    label: Optional[str] = None


class ImageRef(BaseModel):
    url: File = Field(description="the image")
    weight: float = Field(default=1.0, gt=0, le=2)


class GenerateInput(BaseAppInput):
    prompt: str = Field(description="what to draw", min_length=1, max_length=200)
    negative_prompt: Optional[str] = None
    steps: int = Field(default=30, ge=1, le=100)
    guidance: float = Field(default=7.5, ge=0.0)
    seed: Optional[int] = Field(default=None, ge=0)
    style: Style = Style.photo
    size: Literal["512x512", "1024x1024"] = "512x512"
    tags: List[str] = Field(default_factory=list, max_length=5)
    regions: List[Region] = []
    image: Optional[File] = None
    images: List[ImageRef] = []
    masks: Dict[str, File] = {}
    code: str = Field(default="ab", pattern=r"^[a-z]+$")


class GenerateOutput(BaseAppOutput):
    image: File
    seed: int


class UpscaleInput(BaseAppInput):
    image: File = Field(description="input image")
    scale: Literal[2, 4] = 2


class UpscaleOutput(BaseAppOutput):
    image: File


class Circle(BaseModel):
    kind: Literal["circle"] = "circle"
    r: float


class Square(BaseModel):
    kind: Literal["square"] = "square"
    side: float


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    a: int


class CaptionInput(BaseAppInput):
    image: File
    extra: Union[File, List[File], None] = None
    hint: Union[int, str, None] = None
    shape: Union[Circle, Square] = Field(default=None, discriminator="kind")
    strict: Optional[Strict] = None
    region: Optional[Region] = None
    mode: Literal["fast"] = "fast"


class CaptionOutput(BaseAppOutput):
    text: str


FUNCTIONS = {
    "generate": ("Generate an image.", GenerateInput, GenerateOutput),
    "upscale": ("", UpscaleInput, UpscaleOutput),
    "caption": ("Describe an image.", CaptionInput, CaptionOutput),
}

# (function, input, lax): lax = pydantic coerces, infsh rejects.
CASES = [
    ("generate", {"prompt": "a cat"}, False),
    ("generate", {}, False),
    ("generate", {"prompt": ""}, False),
    ("generate", {"prompt": "x" * 201}, False),
    ("generate", {"prompt": "a", "steps": 0}, False),
    ("generate", {"prompt": "a", "steps": 101}, False),
    ("generate", {"prompt": "a", "steps": "abc"}, False),
    ("generate", {"prompt": "a", "steps": "5"}, True),
    ("generate", {"prompt": "a", "steps": 5.5}, False),
    ("generate", {"prompt": "a", "guidance": 3}, False),
    ("generate", {"prompt": "a", "seed": None}, False),
    ("generate", {"prompt": "a", "seed": -1}, False),
    ("generate", {"prompt": "a", "seed": "x"}, False),
    ("generate", {"prompt": "a", "style": "anime"}, False),
    ("generate", {"prompt": "a", "style": "oil"}, False),
    ("generate", {"prompt": "a", "size": "256x256"}, False),
    ("generate", {"prompt": "a", "tags": ["a", "b"]}, False),
    ("generate", {"prompt": "a", "tags": ["a"] * 6}, False),
    ("generate", {"prompt": "a", "tags": "a"}, False),
    ("generate", {"prompt": "a", "regions": [{"x": 1, "y": 2}]}, False),
    ("generate", {"prompt": "a", "regions": [{"x": 1}]}, False),
    ("generate", {"prompt": "a", "regions": [{"x": -1, "y": 0, "label": 3}]}, False),
    ("generate", {"prompt": "a", "image": "/tmp/in.png"}, False),
    ("generate", {"prompt": "a", "image": {"path": "/tmp/in.png"}}, False),
    ("generate", {"prompt": "a", "images": [{"url": "/tmp/a.png"}, {"url": {"uri": "/tmp/b.png"}, "weight": 2}]}, False),
    ("generate", {"prompt": "a", "images": [{"url": "/tmp/a.png", "weight": 0}]}, False),
    ("generate", {"prompt": "a", "images": [{"weight": 1}]}, False),
    ("generate", {"prompt": "a", "masks": {"m1": "/tmp/m.png"}}, False),
    ("generate", {"prompt": "a", "code": "AB"}, False),
    ("generate", {"prompt": "a", "unknown": 1}, False),
    ("generate", {"prompt": 5, "steps": "x", "seed": -3}, False),
    ("upscale", {"image": "/tmp/in.png"}, False),
    ("upscale", {"image": "/tmp/in.png", "scale": 4}, False),
    ("upscale", {"image": "/tmp/in.png", "scale": 3}, False),
    ("upscale", {"scale": 2}, False),
    ("caption", {"image": "/tmp/i.png"}, False),
    ("caption", {"image": "/tmp/i.png", "extra": ["/tmp/a.png", "/tmp/b.png"]}, False),
    ("caption", {"image": "/tmp/i.png", "extra": "/tmp/a.png"}, False),
    ("caption", {"image": "/tmp/i.png", "hint": 3}, False),
    ("caption", {"image": "/tmp/i.png", "hint": "three"}, False),
    ("caption", {"image": "/tmp/i.png", "hint": [3]}, False),
    ("caption", {"image": "/tmp/i.png", "shape": {"kind": "circle", "r": 1}}, False),
    ("caption", {"image": "/tmp/i.png", "shape": {"kind": "square"}}, False),
    ("caption", {"image": "/tmp/i.png", "shape": {"kind": "triangle"}}, False),
    ("caption", {"image": "/tmp/i.png", "shape": {"r": 1}}, False),
    ("caption", {"image": "/tmp/i.png", "shape": 3}, False),
    ("caption", {"image": "/tmp/i.png", "strict": {"a": 1}}, False),
    ("caption", {"image": "/tmp/i.png", "strict": {"a": 1, "b": 2}}, False),
    ("caption", {"image": "/tmp/i.png", "region": {"x": 0, "y": "no"}}, False),
    ("caption", {"image": "/tmp/i.png", "mode": "slow"}, False),
    ("caption", {"image": 5}, False),
]


def main():
    schema = {
        name: {
            "description": desc,
            "input_schema": inp.model_json_schema(),
            "output_schema": out.model_json_schema(),
        }
        for name, (desc, inp, out) in sorted(FUNCTIONS.items())
    }
    (HERE / "functions_schema.json").write_text(json.dumps(schema, indent=2) + "\n")

    cases = []
    for function, data, lax in CASES:
        model = FUNCTIONS[function][1]
        try:
            model.model_validate(data)
            errors = []
        except ValidationError as e:
            errors = [".".join(str(p) for p in err["loc"]) for err in e.errors()]
        cases.append({
            "function": function,
            "input": data,
            "pydantic_valid": not errors,
            "pydantic_error_locs": errors,
            "lax": lax,
        })
    (HERE / "validation_cases.json").write_text(json.dumps(cases, indent=2) + "\n")


if __name__ == "__main__":
    main()
