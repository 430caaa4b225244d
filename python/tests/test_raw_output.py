"""Outputs serialized straight to JSON by their model (``RawJSON``) when
they hold no ``File``, and spliced into the frame as written; outputs with
files take the dump's way, which finds their pointers."""

from __future__ import annotations

import json
import sys
from typing import List, Optional

from harness import PYTHON_ROOT

sys.path.insert(0, str(PYTHON_ROOT))

from inferencesh import BaseAppOutput, File  # noqa: E402
from pydantic import ConfigDict, computed_field  # noqa: E402

from infsh_worker.files import serialize  # noqa: E402
from infsh_worker.protocol import RawJSON, encode  # noqa: E402


class Vectors(BaseAppOutput):
    vectors: List[List[float]]
    note: Optional[str] = None


class WithFile(BaseAppOutput):
    image: File
    score: float


class Computed(BaseAppOutput):
    n: int

    @computed_field
    @property
    def doubled(self) -> int:
        return self.n * 2


class NanConstants(BaseAppOutput):
    model_config = ConfigDict(ser_json_inf_nan="constants")
    x: float


def test_a_plain_output_is_its_model_json():
    model = Vectors(vectors=[[1e-05, 1e16, -0.0, 0.1], [3.4028234663852886e38]], note="é")
    output, files = serialize(model)
    assert type(output) is RawJSON
    assert output == model.model_dump_json().encode()
    assert files == []
    frame = encode({"type": "done", "id": "c", "output": output, "files": files, "seconds": 0.5})
    assert frame.endswith(b',"output":' + output + b"}")
    assert json.loads(frame) == {
        "type": "done",
        "id": "c",
        "files": [],
        "seconds": 0.5,
        "output": model.model_dump(mode="json"),
    }


def test_a_raw_output_alone_is_a_valid_message():
    assert encode({"output": RawJSON(b"[1]")}) == b'{"output":[1]}'


def test_an_output_with_a_file_is_dumped_and_its_pointer_found(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("hi")
    output, files = serialize(WithFile(image=File(path=str(path)), score=1.0))
    assert isinstance(output, dict) and type(output) is not RawJSON
    assert [f["pointer"] for f in files] == ["/image"]


def test_computed_fields_and_other_nan_spellings_take_the_dump():
    output, _ = serialize(Computed(n=2))
    assert type(output) is dict and output["doubled"] == 4
    output, _ = serialize(NanConstants(x=float("nan")))
    assert type(output) is dict
    assert json.loads(encode({"type": "done", "output": output}))["output"]["x"] is None
