"""Session tokens: the secret a client gets with its answer, and the hash its record keeps.

In a module of its own (no Django, no DRF) so that the session runtime can mint
tokens without importing the API layer that checks them.
"""

from __future__ import annotations

import hashlib
import secrets


def new_token() -> tuple[str, str]:
    """A fresh session secret and the hash stored in its record."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    """SHA-256 of a token. ``surrogatepass``: JSON may carry a lone surrogate
    (``"\\ud800"``), which plain UTF-8 cannot encode; it hashes to a wrong token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
