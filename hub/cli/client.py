"""The CLI's side of the API: where the hub is, the caller's token, one request at a time.

The hub's URL comes from --hub, else $EDGE_HUB_URL, else the credentials file; the token from
$EDGE_HUB_TOKEN, else the credentials file ($XDG_CONFIG_HOME/edge-hub/credentials, else
~/.config/edge-hub/credentials; or $EDGE_HUB_CREDENTIALS), a TOML file

    url = "https://hub.example:8443"
    token = "eh_..."
    ca = "/etc/edge-hub/ca.pem"      # optional: the CA of the hub's certificate

that must be the user's own and private (no permission for group or others): a token anyone
on the machine can read is refused rather than used. The standard library is enough
for one request a command (http.client: it starts faster than urllib.request, let alone an
HTTP client library).
"""

from __future__ import annotations

import json
import os
import stat
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from hub.errors import Conflict, Forbidden, HubError, Invalid, NotFound, Unauthorized

ENV_URL, ENV_TOKEN, ENV_CREDENTIALS, ENV_CA = ("EDGE_HUB_URL", "EDGE_HUB_TOKEN",
                                               "EDGE_HUB_CREDENTIALS", "EDGE_HUB_CA")
TIMEOUT_S = 30.0
MAX_ANSWER = 64 * 1024 * 1024


def credentials_path() -> Path:
    if os.environ.get(ENV_CREDENTIALS):
        return Path(os.environ[ENV_CREDENTIALS])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "edge-hub" / "credentials"


def read_credentials(path: Path) -> dict[str, str]:
    """The credentials file's keys; refuse a file others may read or that is not ours."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise HubError(f"cannot read the credentials file {path}: {err.strerror}") from err
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if os.name == "posix":
            if st.st_uid != os.getuid():
                raise HubError(f"the credentials file {path} belongs to another user; "
                               "refusing to use it")
            if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise HubError(f"the credentials file {path} is readable by others (mode "
                               f"{stat.S_IMODE(st.st_mode):o}); run: chmod 600 {path}")
        raw = f.read(65537)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as err:
        raise HubError(f"the credentials file {path} is not valid TOML") from err
    out = {}
    for key in ("url", "token", "ca"):
        if key in data:
            if not isinstance(data[key], str):
                raise HubError(f"the credentials file {path}: {key} must be a string")
            out[key] = data[key]
    unknown = set(data) - {"url", "token", "ca"}
    if unknown:
        raise HubError(f"the credentials file {path}: unknown key {sorted(unknown)[0]!r}")
    return out


class Client:
    """Requests to the hub's API as one user."""

    def __init__(self, url: str, token: str, ca: str | None = None):
        parsed = urllib.parse.urlsplit(url)
        try:
            port = parsed.port
        except ValueError:
            port = -1
        if parsed.scheme not in ("http", "https") or not parsed.hostname or port == -1:
            raise Invalid(f"--hub: expected http(s)://HOST[:PORT], got {url!r}")
        self.base = url.rstrip("/")
        self.scheme, self.host, self.port = parsed.scheme, parsed.hostname, port
        self.prefix = parsed.path.rstrip("/")
        self.token = token
        self.ca = ca

    @classmethod
    def from_args(cls, args) -> "Client":
        creds: dict[str, str] = {}
        url = getattr(args, "hub", None) or os.environ.get(ENV_URL)
        token = os.environ.get(ENV_TOKEN)
        if not url or not token:
            creds = read_credentials(credentials_path())
        url = url or creds.get("url")
        token = token or creds.get("token")
        if not url:
            raise Invalid("no hub: pass --hub URL or set EDGE_HUB_URL")
        if not token:
            raise Unauthorized(f"no API token: set {ENV_TOKEN} or put it in "
                               f"{credentials_path()} (mode 600)")
        return cls(url, token, os.environ.get(ENV_CA) or creds.get("ca"))

    def _connection(self):
        import http.client

        if self.scheme == "https":
            import ssl

            context = ssl.create_default_context(cafile=self.ca or None)
            return http.client.HTTPSConnection(self.host, self.port, timeout=TIMEOUT_S,
                                               context=context)
        return http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_S)

    def request(self, method: str, path: str, query: dict[str, Any] | None = None,
                body: dict[str, Any] | None = None) -> Any:
        import http.client

        q = {k: ("true" if v is True else v) for k, v in (query or {}).items()
             if v not in (None, False, "")}
        target = self.prefix + path + ("?" + urllib.parse.urlencode(q) if q else "")
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn = self._connection()
        try:
            conn.request(method, target, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read(MAX_ANSWER)
        except (OSError, http.client.HTTPException) as err:
            reason = getattr(err, "reason", None) or err
            raise HubError(f"cannot reach the hub at {self.base}: {reason}") from None
        finally:
            conn.close()
        if resp.status >= 400:
            err = _error(resp.status, raw)
            if isinstance(err, RateLimited):
                err.retry_after = _retry_after(resp.getheader("Retry-After"))
            raise err
        try:
            return json.loads(raw)
        except ValueError as err:
            raise HubError(f"the hub at {self.base} answered something that is not JSON") \
                from err

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, None, body)


class RateLimited(HubError):
    """429: over the caller's rate; `retry_after` is the seconds the hub asked to wait."""

    retry_after: float = 1.0


def _retry_after(value: str | None) -> float:
    if value and value.isdigit():
        return min(float(value), 60.0)
    return 1.0


def _error(status: int, raw: bytes) -> HubError:
    detail = ""
    try:
        data = json.loads(raw[:65536])
        detail = str(data.get("detail") or data.get("title") or "")[:500]
    except (ValueError, AttributeError):
        pass
    cls = {400: Invalid, 401: Unauthorized, 403: Forbidden, 404: NotFound,
           409: Conflict, 429: RateLimited}.get(status, HubError)
    prefix = {401: "not authorized (401)", 403: "forbidden (403)"}.get(status,
                                                                       f"hub answered {status}")
    return cls(f"{prefix}: {detail}" if detail else prefix)
