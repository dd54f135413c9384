"""The hub's signing keys: an Ed25519 key ring in one folder, rotated with the old key's blessing.

    KeyRing.init(folder, passphrase=None)  create the first key; refuses to overwrite a ring
    KeyRing.load(folder, passphrase=None)  open it (the passphrase if the key is encrypted)
    ring.sign(data) -> {"kid", "sig"}      sign with the current key
    ring.rotate() -> statement             a new current key, endorsed by the old one
    ring.public_keys() -> {kid: base64}    every key agents may trust (old ones in overlap)
    ring.rotations                         the statements agents need to trust a rotated key

On disk:
    ring.json          the public part: current kid, each key's public key and dates, and
                       the rotation statements (rewritten atomically)
    key-<kid>.pem      one private key each, PKCS#8 PEM, mode 0600, created with O_EXCL;
                       encrypted (BestAvailableEncryption) when a passphrase is given

`cryptography` is imported when a ring is used, not when this module is imported.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from edge_protocol import signing
from hub.errors import HubError

RING = "ring.json"
ENV_KEYS = "EDGE_HUB_KEYS"
ENV_PASSPHRASE = "EDGE_HUB_KEY_PASSPHRASE"


class KeyringError(HubError):
    """The key folder is missing, unreadable, already initialised, or the passphrase is wrong."""


def default_dir() -> str:
    """$EDGE_HUB_KEYS, else a folder beside the default fleet database."""
    if os.environ.get(ENV_KEYS):
        return os.environ[ENV_KEYS]
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "edge-hub" / "keys")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _write_private(path: Path, pem: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)


class KeyRing:
    """The hub's keys: the current one signs, every listed one is trusted by agents."""

    def __init__(self, folder: Path, meta: dict[str, Any], private: dict[str, Any]):
        self.folder = folder
        self._meta = meta
        self._private = private  # kid -> Ed25519PrivateKey (the ones this process loaded)

    # Creating and opening -----------------------------------------------------------------

    @classmethod
    def init(cls, directory: str | os.PathLike[str],
             passphrase: bytes | None = None) -> "KeyRing":
        """Create the folder's first key; raise KeyringError if a ring is already there."""
        folder = Path(directory)
        if (folder / RING).exists() or any(folder.glob("key-*.pem")):
            raise KeyringError(f"{folder} already holds a key ring; use `keys rotate` to "
                               "change the key (it is never overwritten)")
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as err:
            raise KeyringError(f"cannot create {folder}: {err.strerror or err}") from err
        ring = cls(folder, {"current": None, "keys": {}, "rotations": []}, {})
        kid = ring._new_key(passphrase)
        ring._meta["current"] = kid
        ring._save()
        return ring

    @classmethod
    def load(cls, directory: str | os.PathLike[str],
             passphrase: bytes | None = None) -> "KeyRing":
        """Open a ring and its current private key (decrypted with the passphrase)."""
        folder = Path(directory)
        try:
            meta = json.loads((folder / RING).read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise KeyringError(f"no key ring in {folder} (run `edge-hub keys init`)") from err
        except (OSError, ValueError) as err:
            raise KeyringError(f"cannot read {folder / RING}: {err}") from err
        if (not isinstance(meta, dict) or not isinstance(meta.get("keys"), dict)
                or meta.get("current") not in meta["keys"]):
            raise KeyringError(f"{folder / RING} is damaged (no current key)")
        meta.setdefault("rotations", [])
        ring = cls(folder, meta, {})
        ring._private[meta["current"]] = ring._load_private(meta["current"], passphrase)
        return ring

    @staticmethod
    def exists(directory: str | os.PathLike[str]) -> bool:
        """Whether a key ring was initialised in the folder."""
        return (Path(directory) / RING).is_file()

    @staticmethod
    def load_public(directory: str | os.PathLike[str]) -> dict[str, str]:
        """kid -> base64 public key of every key not retired, read from ring.json alone (no
        private key, no passphrase: what a verifier needs)."""
        folder = Path(directory)
        try:
            meta = json.loads((folder / RING).read_text(encoding="utf-8"))
            keys = meta["keys"]
            return {kid: k["public"] for kid, k in keys.items() if not k.get("retired")}
        except FileNotFoundError as err:
            raise KeyringError(f"no key ring in {folder} (run `edge-hub keys init`)") from err
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise KeyringError(f"cannot read {folder / RING}: {err}") from err

    def _new_key(self, passphrase: bytes | None) -> str:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)
        kid = signing.key_id(public)
        encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                      else serialization.NoEncryption())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                encryption)
        try:
            _write_private(self.folder / f"key-{kid}.pem", pem)
        except OSError as err:
            raise KeyringError(f"cannot write the private key: {err.strerror or err}") from err
        self._meta["keys"][kid] = {"public": signing.public_to_text(public),
                                   "created": _now(), "encrypted": bool(passphrase)}
        self._private[kid] = key
        return kid

    def _load_private(self, kid: str, passphrase: bytes | None) -> Any:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        path = self.folder / f"key-{kid}.pem"
        try:
            st = path.stat()
            pem = path.read_bytes()
        except OSError as err:
            raise KeyringError(f"cannot read {path}: {err.strerror or err}") from err
        if st.st_mode & 0o077:
            raise KeyringError(f"{path} is readable by others (mode {st.st_mode & 0o777:o}); "
                               "chmod 600 it")
        try:
            key = serialization.load_pem_private_key(pem, password=passphrase or None)
        except TypeError as err:  # encrypted without a passphrase, or the reverse
            raise KeyringError(f"{path}: {'a passphrase is needed' if not passphrase else err}"
                               f" (set ${ENV_PASSPHRASE} or --passphrase-file)") from err
        except ValueError as err:
            raise KeyringError(f"{path}: wrong passphrase or damaged key") from err
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyringError(f"{path} is not an Ed25519 key")
        public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)
        if signing.key_id(public) != kid:
            raise KeyringError(f"{path} does not hold key {kid}")
        return key

    def _save(self) -> None:
        tmp = self.folder / (RING + ".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self._meta, f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.folder / RING)
        except OSError as err:
            raise KeyringError(f"cannot write {self.folder / RING}: {err.strerror or err}") from err

    # Using ----------------------------------------------------------------------------------

    @property
    def current(self) -> str:
        return self._meta["current"]

    @property
    def rotations(self) -> list[dict[str, Any]]:
        """Rotation statements, oldest first (agents pinning an old key follow them)."""
        return list(self._meta["rotations"])

    def sign(self, data: bytes) -> dict[str, str]:
        """Sign bytes with the current key: {"kid": ..., "sig": base64url}."""
        kid = self.current
        return {"kid": kid, "sig": signing.b64url(self._private[kid].sign(data))}

    def sign_document(self, doc: dict[str, Any]) -> dict[str, Any]:
        """doc with kid and sig; with "endorse" (the rotations) once the first key was rotated."""
        out = signing.sign_document(doc, self.sign, self.current)
        if self._meta["rotations"]:
            out["endorse"] = self.rotations[-signing.MAX_STATEMENTS:]
        return out

    def public_keys(self) -> dict[str, str]:
        """kid -> base64 raw public key, for every key not retired."""
        return {kid: k["public"] for kid, k in self._meta["keys"].items() if not k.get("retired")}

    def describe(self) -> list[dict[str, Any]]:
        return [{"kid": kid, "public": k["public"], "created": k["created"],
                 "current": kid == self.current, "encrypted": bool(k.get("encrypted")),
                 "retired": k.get("retired")}
                for kid, k in sorted(self._meta["keys"].items(), key=lambda i: i[1]["created"])]

    def rotate(self, passphrase: bytes | None = None) -> dict[str, Any]:
        """Make a new current key, endorsed by the old one; both stay trusted (overlap)."""
        old = self.current
        new = self._new_key(passphrase)
        public = signing.public_from_text(self._meta["keys"][new]["public"])
        statement = signing.rotation_statement(
            old, public, _now(), self.sign,
            lambda data: {"kid": new, "sig": signing.b64url(self._private[new].sign(data))})
        self._meta["rotations"].append(statement)
        self._meta["current"] = new
        self._save()
        return statement

    def retire(self, kid: str) -> None:
        """Stop listing an old key as trusted (agents drop it when their config drops it)."""
        if kid == self.current:
            raise KeyringError("the current key cannot be retired; rotate first")
        if kid not in self._meta["keys"]:
            raise KeyringError(f"no key {kid}")
        self._meta["keys"][kid]["retired"] = _now()
        self._save()


def passphrase_from(file: str | None) -> bytes | None:
    """The passphrase from a file (first line) or $EDGE_HUB_KEY_PASSPHRASE, else None."""
    if file:
        try:
            text = Path(file).read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise KeyringError(f"cannot read {file}: {err.strerror or err}") from err
        return text[0].encode() if text and text[0] else None
    env = os.environ.get(ENV_PASSPHRASE)
    return env.encode() if env else None


__all__ = ["KeyRing", "KeyringError", "default_dir", "passphrase_from", "ENV_KEYS",
           "ENV_PASSPHRASE"]
