"""The agent's exceptions.

    EdgeError                   base of everything the agent raises on purpose
    ├── ConfigError             a config file or URL is invalid; carries one Problem per mistake
    ├── ReadingError            a serialized reading is malformed (replay input, MQTT payloads)
    ├── StateError              the state database cannot be opened, migrated or written
    └── DeviceError             a device could not be reached or answered nonsense
        ├── DeviceTimeout       the device did not answer in time
        └── ProtocolError       the device answered bytes or values that do not parse

Library errors (OSError, serial.SerialException, pysnmp errors) are translated into these at
one boundary, inside each collector, with `raise ... from err`. A collector's poll() turns a
DeviceError into a stale reading; it never lets it escape to the loop.
"""

from __future__ import annotations

from edge_common.configschema import ConfigError as SharedConfigError
from edge_common.configschema import Problem


class EdgeError(Exception):
    """Base of every error the agent raises on purpose."""


class ConfigError(EdgeError, SharedConfigError):
    """A config file or device URL is invalid; carries one Problem per mistake."""


class ReadingError(EdgeError):
    """A serialized reading is malformed."""


class StateError(EdgeError):
    """The state database cannot be opened, migrated or written."""


class DeviceError(EdgeError):
    """A device could not be reached or answered nonsense."""


class DeviceTimeout(DeviceError):
    """The device did not answer in time."""


class ProtocolError(DeviceError):
    """The device answered bytes or values that do not parse."""
