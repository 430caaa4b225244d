"""BentoML: the benchmark's trivial app; two APIs (functions) of one service:
POST /upper and POST /lower, each taking {"text": str}."""
import bentoml


@bentoml.service(workers=1)
class Upper:
    def __init__(self) -> None:
        self.ready = True

    @bentoml.api
    def upper(self, text: str) -> dict:
        return {"text": text.upper()}

    @bentoml.api
    def lower(self, text: str) -> dict:
        return {"text": text.lower()}
