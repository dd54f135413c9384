"""Run the hub CLI as `python -m hub`."""

from hub.cli import main

raise SystemExit(main())
