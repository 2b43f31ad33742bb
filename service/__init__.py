"""advantage-service: RL advantages, value targets and losses over gRPC."""

__version__ = "0.1.0"
