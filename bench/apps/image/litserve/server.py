"""LitServe: the image benchmark's app (bench/image.py). As LitServe's image
examples do it: {"image": "<base64 PNG>"} in, {"image": "<base64 PNG>"} out
(its multipart form input would need python-multipart, which litserve does
not install)."""
import base64
import io
import os
import sys

import litserve as ls

sys.path.insert(0, os.environ["IMAGE_LIB_DIR"])
from flip import flip_png  # noqa: E402


class Flip(ls.LitAPI):
    def setup(self, device):
        self.ready = True

    def decode_request(self, request):
        return base64.b64decode(request["image"])

    def predict(self, png):
        out = io.BytesIO()
        flip_png(io.BytesIO(png), out)
        return out.getvalue()

    def encode_response(self, png):
        return {"image": base64.b64encode(png).decode()}


if __name__ == "__main__":
    server = ls.LitServer(Flip(api_path="/predict"), accelerator="cpu")
    server.run(port=int(os.environ["PORT"]), host="127.0.0.1", generate_client_file=False)
