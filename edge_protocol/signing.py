"""Signed documents: canonical bytes, Ed25519 signatures, key ids and key-rotation statements.

The hub signs commands, flags and bundles; the agent verifies them against the public keys it
pins in its config (`[trust]`) and the keys those pinned keys endorsed through a rotation.

    canonical(obj) -> bytes        the bytes that are signed: JSON with sorted keys, no spaces,
                                   UTF-8; integers, strings, booleans, null, lists and objects
                                   only (no floats: their spelling is not canonical)
    key_id(public) -> str          16 hex digits of SHA-256 over the raw 32-byte public key
    verify(data, sig, trusted)     raises SignatureError unless sig = {"kid", "sig"} is a valid
                                   signature of data by trusted[kid]
    sign_document(doc, signer)     doc + {"kid", "sig"} over canonical(doc without sig)
    verify_document(doc, trusted)  the reverse; returns the kid that signed
    rotation_statement(...)        "old key endorses new key", signed by both (TUF-style: the
                                   old key vouches, the new key proves possession)
    extend_trust(trusted, statements) -> trusted + the keys rotation statements endorse

`cryptography` is imported inside the functions that need it, so importing this module costs
nothing on a consumer that never verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from typing import Any, Callable, Iterable, Mapping

from edge_protocol.errors import SignatureError

KID = re.compile(r"[0-9a-f]{16}\Z")
MAX_STATEMENTS = 8      # rotation statements one message may carry
MAX_SIGNED_BYTES = 64 * 1024
Signer = Callable[[bytes], dict]  # bytes -> {"kid": ..., "sig": ...} (hub.keys.KeyRing.sign)


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 4648 section 5)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str, what: str = "value") -> bytes:
    if not isinstance(text, str) or len(text) > 4096 or not re.fullmatch(r"[A-Za-z0-9_\-]*",
                                                                         text):
        raise SignatureError("bad_signature", f"{what}: not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as err:
        raise SignatureError("bad_signature", f"{what}: not base64url") from err


def _check_canonical(obj: Any, depth: int = 0) -> None:
    if depth > 16:
        raise ValueError("nested too deep to sign")
    if obj is None or isinstance(obj, (bool, str)):
        return
    if isinstance(obj, int):
        return
    if isinstance(obj, float):
        raise ValueError("floats are not signed (their spelling is not canonical)")
    if isinstance(obj, (list, tuple)):
        for item in obj:
            _check_canonical(item, depth + 1)
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str):
                raise ValueError("object keys must be strings")
            _check_canonical(value, depth + 1)
        return
    raise ValueError(f"{type(obj).__name__} cannot be signed")


def canonical(obj: Any) -> bytes:
    """The bytes that are signed: sorted keys, no spaces, UTF-8, no floats (ValueError)."""
    _check_canonical(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def key_id(public: bytes) -> str:
    """The id of a raw 32-byte Ed25519 public key: 16 hex digits of its SHA-256."""
    return hashlib.sha256(public).hexdigest()[:16]


def public_from_text(text: str) -> bytes:
    """Decode a public key as written in configs and ring.json (standard or url base64)."""
    if not isinstance(text, str):
        raise SignatureError("bad_key", "a public key must be a string")
    clean = text.strip().replace("+", "-").replace("/", "_").rstrip("=")
    raw = unb64url(clean, "public key")
    if len(raw) != 32:
        raise SignatureError("bad_key", f"an Ed25519 public key has 32 bytes, not {len(raw)}")
    return raw


def public_to_text(public: bytes) -> str:
    return base64.b64encode(public).decode("ascii")


def trusted_keys(texts: Iterable[str]) -> dict[str, bytes]:
    """Map kid -> raw public key for base64 public keys (raises SignatureError on a bad one)."""
    out = {}
    for text in texts:
        raw = public_from_text(text)
        out[key_id(raw)] = raw
    return out


def verify(data: bytes, sig: Mapping[str, Any], trusted: Mapping[str, bytes | str]) -> None:
    """Check that sig = {"kid", "sig"} is a valid Ed25519 signature of data by trusted[kid]
    (a raw 32-byte public key, or its base64 text as KeyRing.public_keys() gives it)."""
    if not isinstance(sig, Mapping):
        raise SignatureError("bad_signature", "signature: expected an object")
    kid, value = sig.get("kid"), sig.get("sig")
    if not isinstance(kid, str) or not KID.match(kid):
        raise SignatureError("bad_signature", "kid: missing or malformed")
    if kid not in trusted:
        raise SignatureError("unknown_key", f"key {kid} is not trusted here")
    raw_sig = unb64url(value, "sig") if isinstance(value, str) else b""
    if len(raw_sig) != 64:
        raise SignatureError("bad_signature", "sig: an Ed25519 signature has 64 bytes")
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    public = trusted[kid]
    if isinstance(public, str):  # base64, as KeyRing.public_keys() gives it
        public = public_from_text(public)
    try:
        Ed25519PublicKey.from_public_bytes(bytes(public)).verify(raw_sig, data)
    except InvalidSignature as err:
        raise SignatureError("bad_signature", f"signature by {kid} does not verify") from err
    except ValueError as err:  # a trusted entry that is not a key
        raise SignatureError("bad_key", f"trusted key {kid}: {err}") from err


UNSIGNED = ("sig", "endorse")  # fields a signature does not cover


def signed_bytes(doc: Mapping[str, Any]) -> bytes:
    """What a document's signature covers: the document without sig and endorse, canonical."""
    return canonical({k: v for k, v in doc.items() if k not in UNSIGNED})


def sign_document(doc: Mapping[str, Any], signer: Signer, kid: str) -> dict[str, Any]:
    """Return doc with "kid" (inside the signed bytes) and "sig" added."""
    body = dict(doc)
    body["kid"] = kid
    signature = signer(signed_bytes(body))
    if signature.get("kid") != kid:
        raise ValueError("the signer used another key than the one named")
    body["sig"] = signature["sig"]
    return body


def verify_document(doc: Mapping[str, Any], trusted: Mapping[str, bytes]) -> str:
    """Verify a signed document (raises SignatureError); return the kid that signed it."""
    if not isinstance(doc, Mapping):
        raise SignatureError("bad_signature", "expected an object")
    try:
        data = signed_bytes(doc)
    except ValueError as err:
        raise SignatureError("bad_signature", f"not signable: {err}") from err
    if len(data) > MAX_SIGNED_BYTES:
        raise SignatureError("oversized", f"{len(data)} signed bytes > {MAX_SIGNED_BYTES}")
    verify(data, {"kid": doc.get("kid"), "sig": doc.get("sig")}, trusted)
    return doc["kid"]


# Key rotation -------------------------------------------------------------------------------

def rotation_statement(old_kid: str, new_public: bytes, issued: str, sign_old: Signer,
                       sign_new: Signer) -> dict[str, Any]:
    """The old key endorses the new one; the new one signs too (proof it holds the key)."""
    new_kid = key_id(new_public)
    body = {"type": "key_rotation", "old": old_kid, "new": new_kid,
            "public": public_to_text(new_public), "issued": issued}
    data = canonical(body)
    old_sig = sign_old(data)
    new_sig = sign_new(data)
    if old_sig.get("kid") != old_kid or new_sig.get("kid") != new_kid:
        raise ValueError("rotation signed with the wrong keys")
    return {**body, "sig": old_sig["sig"], "new_sig": new_sig["sig"]}


def check_rotation(statement: Mapping[str, Any], trusted: Mapping[str, bytes]) -> tuple[str, bytes]:
    """Verify one rotation statement against trusted keys; return (new kid, new public key)."""
    if not isinstance(statement, Mapping) or statement.get("type") != "key_rotation":
        raise SignatureError("bad_rotation", "not a key rotation statement")
    body = {k: statement.get(k) for k in ("type", "old", "new", "public", "issued")}
    if not all(isinstance(v, str) for v in body.values()):
        raise SignatureError("bad_rotation", "fields missing or of the wrong type")
    public = public_from_text(body["public"])
    if key_id(public) != body["new"]:
        raise SignatureError("bad_rotation", "new kid does not match its public key")
    data = canonical(body)
    verify(data, {"kid": body["old"], "sig": statement.get("sig")}, trusted)
    verify(data, {"kid": body["new"], "sig": statement.get("new_sig")}, {body["new"]: public})
    return body["new"], public


def extend_trust(trusted: Mapping[str, bytes],
                 statements: Iterable[Mapping[str, Any]]) -> dict[str, bytes]:
    """Return trusted plus every key a chain of valid rotation statements endorses.

    Statements may come in any order; at most MAX_STATEMENTS are considered. A statement that
    does not verify is skipped (the message it came with then fails on its own signature).
    """
    out = dict(trusted)
    pending = list(statements)[:MAX_STATEMENTS]
    progress = True
    while pending and progress:
        progress = False
        for st in list(pending):
            old = st.get("old") if isinstance(st, Mapping) else None
            if old not in out:
                continue
            pending.remove(st)
            try:
                kid, public = check_rotation(st, out)
            except SignatureError:
                continue
            out[kid] = public
            progress = True
    return out


__all__ = ["canonical", "key_id", "verify", "sign_document", "verify_document",
           "signed_bytes", "rotation_statement", "check_rotation", "extend_trust",
           "trusted_keys", "public_from_text", "public_to_text", "b64url", "unb64url",
           "SignatureError", "KID"]
