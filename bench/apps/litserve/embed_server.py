"""LitServe: the embed benchmark's app (bench/embed.py). EMBED_MODE picks it:
`embed` (32 texts -> 32 vectors, TableModel), `one` (one text -> one vector,
MatrixModel, unbatched) or `batched` (the same with LitServe's batching:
max_batch_size 32, batch_timeout 5 ms)."""
import os
import sys

import litserve as ls

sys.path.insert(0, os.environ["EMBED_MODEL_DIR"])
from embed_model import MatrixModel, TableModel  # noqa: E402

MODE = os.environ.get("EMBED_MODE", "embed")


class Embed(ls.LitAPI):
    def setup(self, device):
        self.model = TableModel()

    def decode_request(self, request):
        return request["texts"]

    def predict(self, texts):
        return self.model.encode(texts)

    def encode_response(self, output):
        return {"vectors": output.tolist()}


class EmbedOne(ls.LitAPI):
    def setup(self, device):
        self.model = MatrixModel()

    def decode_request(self, request):
        return request["text"]

    def predict(self, text):
        if isinstance(text, list):  # batched: a list of decoded requests
            return list(self.model.encode(text))
        return self.model.encode([text])[0]

    def encode_response(self, output):
        return {"vector": output.tolist()}


if __name__ == "__main__":
    port = int(os.environ["PORT"])
    if MODE == "embed":
        server = ls.LitServer(Embed(api_path="/predict"), accelerator="cpu")
    elif MODE == "one":
        server = ls.LitServer(EmbedOne(api_path="/predict"), accelerator="cpu")
    else:
        try:  # litserve >= 0.2.11: batching is the API's
            api = EmbedOne(api_path="/predict", max_batch_size=32, batch_timeout=0.005)
            server = ls.LitServer(api, accelerator="cpu")
        except TypeError:
            server = ls.LitServer(EmbedOne(api_path="/predict"), accelerator="cpu",
                                  max_batch_size=32, batch_timeout=0.005)
    server.run(host="127.0.0.1", port=port, generate_client_file=False)
