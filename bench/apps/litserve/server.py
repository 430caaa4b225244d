"""LitServe: the benchmark's trivial app, two APIs (functions) on one server:
POST /predict upper-cases, POST /lower lower-cases."""
import os

import litserve as ls


class Upper(ls.LitAPI):
    def setup(self, device):
        self.ready = True

    def decode_request(self, request):
        return request["text"]

    def predict(self, text):
        return text.upper()

    def encode_response(self, output):
        return {"text": output}


class Lower(Upper):
    def predict(self, text):
        return text.lower()


if __name__ == "__main__":
    apis = [Upper(api_path="/predict"), Lower(api_path="/lower")]
    server = ls.LitServer(apis, accelerator="cpu")
    server.run(host="127.0.0.1", port=int(os.environ["PORT"]), generate_client_file=False)
