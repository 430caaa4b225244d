"""The tokens benchmark on LitServe: `stream=True`, predict yields n tokens,
encode_response yields each as it comes (LitServe's streaming docs)."""
import os

import litserve as ls


def token(i: int) -> str:
    return f"w{i:04d} "


class Tokens(ls.LitAPI):
    def setup(self, device):
        self.ready = True

    def decode_request(self, request):
        return int(request.get("n", 1000))

    def predict(self, n):
        for i in range(n):
            yield token(i)

    def encode_response(self, output):
        for out in output:
            yield out


if __name__ == "__main__":
    server = ls.LitServer(Tokens(stream=True), accelerator="cpu")
    server.run(host="127.0.0.1", port=int(os.environ["PORT"]), generate_client_file=False)
