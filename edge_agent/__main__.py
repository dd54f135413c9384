"""Run the agent CLI as `python -m edge_agent`."""

from edge_agent.cli.main import main

raise SystemExit(main())
