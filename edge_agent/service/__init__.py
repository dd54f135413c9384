"""Running as a service: systemd's notify protocol, the Windows service, install paths and plans."""
