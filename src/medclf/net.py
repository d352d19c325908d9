"""A short reachability probe, so online-only paths fail in seconds when offline.

Downloaders (kagglehub, huggingface_hub) retry for tens of seconds before giving up; one TCP
connect with a timeout tells the same thing at once.
"""

from __future__ import annotations

import socket
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 3.0


def reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when a TCP connection to ``url``'s host and port opens within ``timeout``."""
    parsed = urlparse(url)
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False
