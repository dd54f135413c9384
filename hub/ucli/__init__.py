"""`edge-hub` command groups added for issue 12: check-config, users, audit (and, once the API
lands, acl). Each module has `register(sub)`; hub/cli.py calls `register_all`.

(These move into hub/cli/ once the layout of issue 11 has landed.)
"""

from __future__ import annotations


def register_all(sub) -> None:
    from hub.ucli import acl, api_cmd, audit, check_config, users

    check_config.register(sub)
    users.register(sub)
    audit.register(sub)
    acl.register(sub)
    api_cmd.register(sub)
