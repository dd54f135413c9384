"""Console helpers shared by both command lines (edge-agent and edge-hub).

    output.py    tables that fit the terminal, --json output, escape() of untrusted text
    logs.py      structured log lines on stderr (text or json)
    versions.py  what --version prints: Python and library versions from installed metadata

Standard library only; imports neither edge_agent nor hub.
"""
