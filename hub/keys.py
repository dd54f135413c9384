"""The hub's Ed25519 key ring (the keys contract in the session plan).

STAND-IN (helper U, for signing audit checkpoints until helper C's hub/keys.py lands; C's
version wins on merge, with the same names):

    KeyRing.init(directory, passphrase=None) -> KeyRing   creates the key; refuses to overwrite
    KeyRing.load(directory, passphrase=None) -> KeyRing
    ring.rotate()                                         a new key, signed by the old one
    ring.sign(data) -> {"kid": ..., "sig": base64url}
    ring.public_keys() -> {kid: base64 raw public key}

Files: keys.json (public keys, the current kid, each rotation's endorsement) and
<kid>.key (PKCS#8 PEM, mode 0600, encrypted when a passphrase is given).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from hub.errors import HubError


class KeyRingError(HubError):
    """The key ring cannot be created, read or used."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def key_id(raw_public: bytes) -> str:
    """A key's id: the first 16 hex digits of SHA-256 of its raw public key."""
    return hashlib.sha256(raw_public).hexdigest()[:16]


class KeyRing:
    """The hub's signing keys in a directory."""

    def __init__(self, directory: Path, meta: dict, private, passphrase: bytes | None):
        self.directory = directory
        self.meta = meta
        self._private = private
        self._passphrase = passphrase

    @property
    def current(self) -> str:
        """The id of the key that signs now."""
        return self.meta["current"]

    kid = current

    @classmethod
    def init(cls, directory: str | Path, passphrase: bytes | None = None) -> "KeyRing":
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        directory = Path(directory)
        if (directory / "keys.json").exists():
            raise KeyRingError(f"a key ring already exists in {directory}; not overwriting it")
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        private = Ed25519PrivateKey.generate()
        kid = cls._write_private(directory, private, passphrase)
        meta = {"current": kid, "keys": {kid: {"public": _b64(cls._raw(private))}}}
        cls._write_meta(directory, meta)
        return cls(directory, meta, private, passphrase)

    @classmethod
    def load(cls, directory: str | Path, passphrase: bytes | None = None) -> "KeyRing":
        from cryptography.hazmat.primitives import serialization

        directory = Path(directory)
        try:
            meta = json.loads((directory / "keys.json").read_text())
            pem = (directory / f"{meta['current']}.key").read_bytes()
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise KeyRingError(f"no usable key ring in {directory} (edge-hub keys init): "
                            f"{getattr(err, 'strerror', None) or err}") from err
        try:
            private = serialization.load_pem_private_key(pem, password=passphrase)
        except (ValueError, TypeError) as err:
            raise KeyRingError(f"cannot read the hub's private key in {directory}: wrong or "
                            "missing passphrase, or a damaged file") from err
        return cls(directory, meta, private, passphrase)

    @staticmethod
    def load_public(directory: str | Path) -> dict[str, str]:
        """The trusted public keys of a ring, without its private key (for verifiers)."""
        try:
            meta = json.loads((Path(directory) / "keys.json").read_text())
            return {kid: k["public"] for kid, k in meta["keys"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise KeyRingError(f"no usable key ring in {directory}") from err

    @staticmethod
    def _raw(private) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return private.public_key().public_bytes(serialization.Encoding.Raw,
                                                 serialization.PublicFormat.Raw)

    @classmethod
    def _write_private(cls, directory: Path, private, passphrase: bytes | None) -> str:
        from cryptography.hazmat.primitives import serialization

        enc = (serialization.BestAvailableEncryption(passphrase) if passphrase
               else serialization.NoEncryption())
        pem = private.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8, enc)
        kid = key_id(cls._raw(private))
        path = directory / f"{kid}.key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return kid

    @staticmethod
    def _write_meta(directory: Path, meta: dict) -> None:
        tmp = directory / "keys.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
        os.replace(tmp, directory / "keys.json")

    def rotate(self) -> str:
        """Make a new current key, endorsed by the old one; both stay trusted. Return its kid."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        private = Ed25519PrivateKey.generate()
        kid = self._write_private(self.directory, private, self._passphrase)
        raw = self._raw(private)
        endorsement = self.sign(b"edge-hub key rotation\n" + raw)
        meta = json.loads(json.dumps(self.meta))
        meta["keys"][kid] = {"public": _b64(raw), "endorsed_by": endorsement}
        meta["current"] = kid
        self._write_meta(self.directory, meta)
        self.meta, self._private = meta, private
        return kid

    def sign(self, data: bytes) -> dict[str, str]:
        return {"kid": self.kid, "sig": _b64url(self._private.sign(data))}

    def public_keys(self) -> dict[str, str]:
        return {kid: k["public"] for kid, k in self.meta["keys"].items()}


def verify(data: bytes, sig: dict, trusted: dict[str, str]) -> None:
    """Check an Ed25519 signature by a trusted key; raise SignatureError.

    STAND-IN for edge_protocol.signing.verify (helper C); same arguments.
    """
    try:
        from edge_protocol.signing import verify as real  # type: ignore[import-not-found]
    except ImportError:
        real = None
    if real is not None:
        real(data, sig, trusted)
        return
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not isinstance(sig, dict) or not isinstance(sig.get("kid"), str) \
            or not isinstance(sig.get("sig"), str):
        raise SignatureError("malformed signature")
    public = trusted.get(sig["kid"])
    if public is None:
        raise SignatureError(f"signed by an untrusted key {sig['kid'][:32]!r}")
    try:
        raw_sig = base64.urlsafe_b64decode(sig["sig"] + "=" * (-len(sig["sig"]) % 4))
        Ed25519PublicKey.from_public_bytes(base64.b64decode(public)).verify(raw_sig, data)
    except (InvalidSignature, ValueError) as err:
        raise SignatureError("bad signature") from err


class SignatureError(HubError):
    """A signature does not verify (stand-in for edge_protocol.errors.SignatureError)."""
