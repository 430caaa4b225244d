from .inference import App

__all__ = ["App"]
