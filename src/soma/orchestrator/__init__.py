"""Durable execution of agent projects on Temporal."""
