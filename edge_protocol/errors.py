"""The protocol's one exception: a message (or a field of one) that does not follow the protocol.

`code` is a short reason the hub counts rejects by (bad_envelope, bad_body, bad_ts, ...);
`detail` says which field and why, bounded in length and safe to log.
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """A message that does not follow the protocol; `code` is a short reason to count by."""

    def __init__(self, code: str, detail: str = ""):
        self.code = code
        self.detail = detail[:300]
        super().__init__(f"{code}: {self.detail}" if self.detail else code)


# The name the agent and the hub used before the protocol package existed.
WireError = ProtocolError

__all__ = ["ProtocolError", "WireError", "SignatureError"]


class SignatureError(ProtocolError):
    """A signed document whose signature does not verify against a trusted key (signing.py)."""

    def __init__(self, code: str = "bad_signature", detail: str = ""):
        super().__init__(code, detail)
