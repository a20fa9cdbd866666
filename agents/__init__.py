"""ACKTR agents: policies, action distributions, rollout storage, returns and run config."""
