from .inference import App  # noqa: F401
