"""What every connector shares: the lifecycle, HTTP with checked answers, secrets, errors.

The lifecycle follows the go.d plugin's (netdata): `init()` checks the settings and reads the
secrets (no network), `check()` makes one cheap authenticated call, `deliver(intent)` does one
intent's work, `cleanup()` closes the HTTP client. The delivery worker calls them; a connector
keeps no state between deliveries beyond its HTTP client and an OAuth token.

Errors say what the worker should do:
    Retryable(retry_after)  try again later (timeouts, 408/425/429/5xx); Retry-After honoured
    AuthFailed              401/403: the credentials are wrong or expired (retried slowly, the
                            circuit opens, and the error names the connector, never the secret)
    Permanent               a 4xx the same request will always get, or an answer we cannot use:
                            the intent is `failed` until `edge-hub tickets retry`
Every field of every answer is checked before use: the outside system is hostile until checked.
"""

from __future__ import annotations

import email.utils
import ipaddress
import os
import re
import stat
import time
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

import httpx

from hub.errors import HubError

MAX_RETRY_AFTER_S = 3600.0
MAX_BODY = 1024 * 1024           # an answer larger than this is not read
USER_AGENT = "retail-edge-hub/0.1"


class ConnectorError(HubError):
    """A delivery did not happen (see the subclasses for what to do next)."""


class Retryable(ConnectorError):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class NotYet(Retryable):
    """The outside system answered, but not what we need yet (a search that has not caught
    up): try again later; not a failure of the connector (its circuit breaker ignores it)."""


class AuthFailed(Retryable):
    """The outside system refused our credentials (401/403)."""


class Permanent(ConnectorError):
    """The same request will fail again: a person must look (then `tickets retry`)."""


class Unusable(Permanent):
    """A 2xx answer whose body we cannot use (not JSON, a field missing or malformed)."""


class ConfigError(HubError):
    """A connector's settings are wrong; the message starts with the key path."""


@dataclass(frozen=True)
class Result:
    """What the outside system told about the ticket after a delivery (all checked)."""

    key: str | None = None       # the human-facing id (INC0010001, OPS-12, 4711)
    url: str | None = None       # a link a person can open
    ref: str | None = None       # the id the API addresses it by (sys_id, issue key, id)
    state: str | None = None     # the state it is in now, in the tool's words
    refused: str | None = None   # "wontfix" or "closed": a reopen the tool will not do

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class Secret:
    """A secret read from a file or the environment; it never prints itself."""

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


def read_secret(settings: Mapping[str, Any], name: str, path: str,
                required: bool = True) -> Secret | None:
    """Read `{name}_file` (a file private to its owner) or `{name}_env` (a variable name).

    A secret written in the configuration itself is refused: config files get copied around.
    """
    if name in settings:
        raise ConfigError(f"{path}.{name}: secrets are not written in the config; use "
                          f"{name}_file (a file readable only by the hub) or {name}_env")
    file_, env = settings.get(f"{name}_file"), settings.get(f"{name}_env")
    if file_ is not None and env is not None:
        raise ConfigError(f"{path}: give {name}_file or {name}_env, not both")
    if file_ is not None:
        if not isinstance(file_, str) or not file_:
            raise ConfigError(f"{path}.{name}_file: expected a path")
        try:
            st = os.stat(file_)
            if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ConfigError(f"{path}.{name}_file: {file_} is readable by others "
                                  "(chmod 600 it)")
            with open(file_, encoding="utf-8") as f:
                value = f.read(8192).strip()
        except OSError as err:
            raise ConfigError(f"{path}.{name}_file: cannot read {file_}: "
                              f"{err.strerror or err}") from err
    elif env is not None:
        if not isinstance(env, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env):
            raise ConfigError(f"{path}.{name}_env: expected an environment variable name")
        value = os.environ.get(env, "").strip()
        if not value:
            raise ConfigError(f"{path}.{name}_env: ${env} is not set")
    elif required:
        raise ConfigError(f"{path}: {name}_file or {name}_env is required")
    else:
        return None
    if not value or any(ord(c) < 32 for c in value):
        raise ConfigError(f"{path}: the {name} read is empty or has control characters")
    return Secret(value)


def setting(settings: Mapping[str, Any], key: str, path: str, kind: type | tuple = str,
            default: Any = ..., choices: tuple = ()) -> Any:
    if key not in settings:
        if default is ...:
            raise ConfigError(f"{path}.{key}: missing")
        return default
    value = settings[key]
    if kind is not bool and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{path}.{key}: expected {getattr(kind, '__name__', kind)}")
    if choices and value not in choices:
        raise ConfigError(f"{path}.{key}: {str(value)[:40]!r} is not one of "
                          f"{', '.join(map(str, choices))}")
    if isinstance(value, str) and any(ord(c) < 32 for c in value):
        raise ConfigError(f"{path}.{key}: control characters")
    return value


def base_url(settings: Mapping[str, Any], path: str, default: str | None = None) -> str:
    """An https URL (plain http only to a loopback address: the tests' stand-in servers)."""
    url = setting(settings, "url", path, str, default if default is not None else ...)
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"{path}.url: expected https://host[/path]")
    if parts.scheme == "http":
        host = parts.hostname
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ConfigError(f"{path}.url: plain http is allowed only to a loopback address")
    if parts.query or parts.fragment or parts.username:
        raise ConfigError(f"{path}.url: no query, fragment or credentials in the URL")
    return url.rstrip("/")


def retry_after(resp: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date), bounded; None if absent."""
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"\d{1,12}(\.\d+)?", value):
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, min(when - time.time(), MAX_RETRY_AFTER_S))


def plain(text: Mapping[str, Any]) -> str:
    """A ticket text's sections ({"summary", "sections": [[title, [lines]]]}) as plain text."""
    out = []
    for title, lines in text["sections"]:
        out.append(f"{title}:")
        out.extend(f"  {line}" for line in lines)
    return "\n".join(out)


def excerpt(resp: httpx.Response) -> str:
    """A short, printable piece of an error answer (for last_error; never a secret of ours)."""
    try:
        text = resp.content[:300].decode("utf-8", "replace")
    except httpx.HTTPError:
        text = ""
    return "".join(c if c.isprintable() else " " for c in text)[:200]


# Checking answers ----------------------------------------------------------------------------

def field(obj: Any, key: str, kind: type | tuple, what: str, *, optional: bool = False) -> Any:
    if not isinstance(obj, dict):
        raise Unusable(f"{what}: expected a JSON object")
    value = obj.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise Unusable(f"{what}.{key}: missing or of the wrong type")
    return value


def text_field(obj: Any, key: str, pattern: str, what: str, *, optional: bool = False,
               maxlen: int = 200) -> str | None:
    value = field(obj, key, (str, int), what, optional=optional)
    if value is None:
        return None
    value = str(value)
    if len(value) > maxlen or not re.fullmatch(pattern, value):
        raise Unusable(f"{what}.{key}: unexpected value")
    return value


class HttpConnector:
    """A connector over HTTP: one httpx client, checked status codes and JSON answers."""

    type = ""
    timeout_s = 10.0

    def __init__(self, name: str, settings: Mapping[str, Any]):
        self.name = name
        self.settings = settings
        self.path = f"tickets.connectors.{name}"
        self.client: httpx.Client | None = None

    # Lifecycle -----------------------------------------------------------------------------

    def init(self) -> None:
        """Check the settings and read the secrets; no network."""
        self.timeout_s = float(setting(self.settings, "timeout_s", self.path, (int, float),
                                       10.0))
        if not 0.1 <= self.timeout_s <= 120:
            raise ConfigError(f"{self.path}.timeout_s: from 0.1 to 120")
        self.configure()
        self.client = httpx.Client(timeout=httpx.Timeout(self.timeout_s),
                                   headers={"User-Agent": USER_AGENT,
                                            "Accept": "application/json"},
                                   follow_redirects=False, trust_env=False)

    def configure(self) -> None:
        raise NotImplementedError

    def check(self) -> None:
        """One cheap authenticated call; raises a ConnectorError when it fails."""

    def deliver(self, intent) -> Result:
        """Do one intent (a hub.domains.tickets.outbox.Claimed)."""
        action = intent.action
        if action == "create":
            if intent.attempts > 1:
                # An earlier attempt may have created it and lost the answer: look first.
                found = self.find(intent.correlation, intent)
                if found is not None:
                    return found
            try:
                return self.create(intent)
            except Unusable as err:
                # Created, most likely, but the answer is no use: the next try looks it up.
                raise Retryable(f"{err} (the create may have succeeded: looked up next time)",
                                5) from err
        ref = intent.external_ref
        if ref is None:
            found = self.find(intent.correlation, intent)
            if found is None or found.ref is None:
                raise NotYet("the ticket is not known on the ITSM side yet", 60)
            ref = found.ref
        if action == "comment":
            return self.comment(intent, ref)
        if action == "resolve":
            return self.resolve(intent, ref)
        if action == "reopen":
            return self.reopen(intent, ref)
        raise Permanent(f"unknown intent action {action!r}")

    def cleanup(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    # What each tool implements ---------------------------------------------------------------

    def find(self, correlation: str, intent) -> Result | None:
        return None

    def create(self, intent) -> Result:
        raise NotImplementedError

    def comment(self, intent, ref: str) -> Result:
        raise NotImplementedError

    def resolve(self, intent, ref: str) -> Result:
        raise NotImplementedError

    def reopen(self, intent, ref: str) -> Result:
        raise NotImplementedError

    # HTTP ---------------------------------------------------------------------------------------

    def auth(self) -> httpx.Auth | None:
        return None

    def request(self, method: str, url: str, *, ok: tuple[int, ...] = (200, 201, 202, 204),
                **kwargs: Any) -> httpx.Response:
        """One HTTP call; the status code decides Retryable, AuthFailed or Permanent."""
        assert self.client is not None, "init() first"
        try:
            resp = self.client.request(method, url, auth=self.auth() or httpx.USE_CLIENT_DEFAULT,
                                       **kwargs)
        except httpx.TimeoutException as err:
            raise Retryable(f"{self.name}: no answer within {self.timeout_s:g} s "
                            f"({type(err).__name__})") from err
        except httpx.HTTPError as err:
            raise Retryable(f"{self.name}: {type(err).__name__}: "
                            f"{str(err)[:120] or 'connection failed'}") from err
        if resp.status_code in ok:
            if len(resp.content) > MAX_BODY:
                raise Unusable(f"{self.name}: answer of {len(resp.content)} bytes")
            return resp
        where = f"{self.name}: HTTP {resp.status_code} on {method} {urlsplit(url).path[:80]}"
        if resp.status_code in (401, 403):
            self.auth_failed()
            raise AuthFailed(f"{where}: credentials refused", 300)
        if resp.status_code in (408, 425, 429, 500, 502, 503, 504):
            raise Retryable(f"{where}: {excerpt(resp)}", retry_after(resp))
        raise Permanent(f"{where}: {excerpt(resp)}")

    def auth_failed(self) -> None:
        """Forget a cached token (OAuth) so the next try asks for a new one."""

    def json(self, resp: httpx.Response, what: str) -> Any:
        try:
            return resp.json()
        except ValueError as err:
            raise Unusable(f"{self.name}: {what}: not JSON") from err
