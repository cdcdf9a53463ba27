"""agentflow: agentic computation graphs."""

__version__ = "0.1.0"
