"""Model factory: timm architectures by name plus medclf's own small CNN."""

from medclf.models.factory import build_model

__all__ = ["build_model"]
