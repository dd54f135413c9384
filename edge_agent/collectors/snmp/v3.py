"""SNMPv3 through pysnmp's asyncio hlapi (one SnmpEngine per loop); imported only for v3 devices.

pysnmp's import costs ~40 MB of RSS, so v1/v2c devices never import this module: they speak BER
through ber.py. Library errors are translated into DeviceError here, at one boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from pathlib import Path
from typing import Any, Callable

from pyasn1.type import univ
from pysnmp.hlapi.v3arch import asyncio as hlapi

from edge_agent.collectors.snmp import protocol
from edge_agent.errors import DeviceError

_AUTH = {"NONE": hlapi.USM_AUTH_NONE, "MD5": hlapi.USM_AUTH_HMAC96_MD5,
         "SHA": hlapi.USM_AUTH_HMAC96_SHA, "SHA224": hlapi.USM_AUTH_HMAC128_SHA224,
         "SHA256": hlapi.USM_AUTH_HMAC192_SHA256, "SHA384": hlapi.USM_AUTH_HMAC256_SHA384,
         "SHA512": hlapi.USM_AUTH_HMAC384_SHA512}
_PRIV = {"NONE": hlapi.USM_PRIV_NONE, "DES": hlapi.USM_PRIV_CBC56_DES,
         "3DES": hlapi.USM_PRIV_CBC168_3DES, "AES": hlapi.USM_PRIV_CFB128_AES,
         "AES192": hlapi.USM_PRIV_CFB192_AES, "AES256": hlapi.USM_PRIV_CFB256_AES}

# One engine per event loop, shared by every SNMPv3 device on it (pysnmp keeps one UDP socket
# and one dispatcher per engine); closed when the last device on that loop closes.
_engines: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list]" = weakref.WeakKeyDictionary()


class _NoMibCompiler:
    """Stand in for pysmi's MIB compiler: OIDs here are numeric, no MIB is ever compiled.

    When pysmi is installed (snmpsim needs it), pysnmp builds its parser on the first request of
    every engine: 2-3 CPU-seconds and tens of MB for nothing, since lookupMib=False.
    """

    def compile(self, *names, **kwargs):
        return {name: "missing" for name in names}


def _numeric_mib_view():
    from pysnmp.smi import builder, view

    mib_builder = builder.MibBuilder()
    mib_builder.set_mib_compiler(_NoMibCompiler(), str(Path(builder.__file__).parent / "mibs"))
    return view.MibViewController(mib_builder)


def acquire_engine() -> hlapi.SnmpEngine:
    """Return this event loop's shared SnmpEngine, creating it on first use."""
    loop = asyncio.get_running_loop()
    entry = _engines.get(loop)
    if entry is None:
        engine = hlapi.SnmpEngine()
        # The key pysnmp's hlapi looks up (hlapi/varbinds.py, MibViewControllerManager).
        engine.cache["mibViewController"] = _numeric_mib_view()
        entry = _engines[loop] = [engine, 0]
    entry[1] += 1
    return entry[0]


def release_engine(engine: hlapi.SnmpEngine) -> None:
    """Give back a reference; the last one closes the engine's dispatcher."""
    for loop, entry in list(_engines.items()):
        if entry[0] is engine:
            entry[1] -= 1
            if entry[1] <= 0:
                del _engines[loop]
                with contextlib.suppress(Exception):
                    engine.close_dispatcher()
            return


def plain(value: Any) -> protocol.RawValue:
    """Turn a pysnmp value into int, bytes, str (an OID) or None (no such object, NULL)."""
    if value is None or isinstance(value, univ.Null):
        return None  # noSuchObject, noSuchInstance and endOfMibView are NULL subtypes.
    try:
        if not value.isValue:
            return None
        if isinstance(value, univ.ObjectIdentifier):
            return ".".join(str(x) for x in value.asTuple())
        if isinstance(value, univ.OctetString):
            return value.asOctets()
        if isinstance(value, univ.Integer):
            return int(value)
    except Exception:  # A value pysnmp decoded but cannot represent is simply absent.
        return None
    return None


class Session:
    """One SNMPv3 printer's credentials and target on the loop's shared engine."""

    def __init__(self, options, where: str, fail: Callable[[Any], DeviceError]) -> None:
        o = options
        self.options, self.where, self.fail = o, where, fail
        self.engine: hlapi.SnmpEngine | None = acquire_engine()
        self.auth = hlapi.UsmUserData(
            o.user, o.auth_key or None, o.priv_key or None,
            authProtocol=_AUTH[o.auth],
            privProtocol=_PRIV[o.priv] if o.auth != "NONE" else hlapi.USM_PRIV_NONE)
        self.context = hlapi.ContextData(contextName=o.context.encode()) if o.context \
            else hlapi.ContextData()
        self.target: Any = None
        self._types: dict[str, Any] = {}

    async def connect(self) -> None:
        """Resolve the printer's address (once)."""
        if self.target is not None:
            return
        o = self.options
        try:
            self.target = await hlapi.UdpTransportTarget.create(
                (o.host, o.port), timeout=o.timeout, retries=o.retries)
        except Exception as err:  # pysnmp wraps name-resolution failures in its own error
            raise DeviceError(f"cannot resolve {o.host!r}: {err}") from err

    def close(self) -> None:
        """Give the engine back; safe to call twice."""
        if self.engine is not None:
            release_engine(self.engine)
            self.engine = None
        self.target = None

    def _type(self, oid: str):
        # A resolved ObjectType is reused: pysnmp skips resolving it again (a large CPU saving).
        t = self._types.get(oid)
        if t is None:
            if len(self._types) > 4096:
                self._types.clear()
            t = self._types[oid] = hlapi.ObjectType(hlapi.ObjectIdentity(oid))
        return t

    def _failed(self, err: Exception) -> DeviceError:
        return DeviceError(f"SNMP request to {self.where} failed: {type(err).__name__}: {err}")

    async def request(self, wanted: list[str], next_: bool = False):
        """One GET (or GETNEXT): (error status, error index, [(oid, plain value)])."""
        command = hlapi.next_cmd if next_ else hlapi.get_cmd
        try:
            ei, es, eidx, vbs = await command(self.engine, self.auth, self.target, self.context,
                                              *(self._type(o) for o in wanted), lookupMib=False)
        except Exception as err:
            raise self._failed(err) from err
        if ei:
            raise self.fail(ei)
        return int(es or 0), int(eidx or 0), [(str(n), plain(v)) for n, v in vbs]

    async def walk(self, root: str, limit: int, bulk: int) -> tuple[dict, bool]:
        """Walk one subtree with GETBULK; return (values, whether it stopped at the bound)."""
        out: dict[str, protocol.RawValue] = {}
        prefix = root + "."
        walker = hlapi.bulk_walk_cmd(self.engine, self.auth, self.target, self.context,
                                     0, bulk, self._type(root),
                                     lexicographicMode=False, lookupMib=False)
        try:
            async with contextlib.aclosing(walker) as rows:
                async for ei, es, _eidx, vbs in rows:
                    if ei:
                        raise self.fail(ei)
                    if es:
                        break
                    for name, value in vbs:
                        key = str(name)
                        if not key.startswith(prefix):
                            return out, False
                        out[key] = plain(value)
                    if len(out) >= limit:
                        return out, True
        except DeviceError:
            raise
        except Exception as err:
            raise DeviceError(f"SNMP walk of {root} on {self.where} failed: "
                              f"{type(err).__name__}: {err}") from err
        return out, False
