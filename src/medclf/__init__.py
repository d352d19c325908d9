"""medclf: from a folder of medical images to a validated, exported and served classifier."""

__version__ = "0.1.0"
