"""Coverage-guided fuzzing of the agent's parsers of outside input (atheris): see README.md."""
