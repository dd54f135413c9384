"""The protocol shared by the agent and the hub (stdlib only; `cryptography` only inside
signing.py, imported lazily). It imports neither edge_agent nor hub."""
