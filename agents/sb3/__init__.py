"""ACKTR for stable-baselines3 users: ``from agents.sb3 import ACKTR`` (docs/sb3.md)."""

from agents.sb3.acktr import ACKTR
from agents.sb3.policies import ACKTRCnnPolicy, ACKTRMultiInputPolicy, ACKTRPolicy

MlpPolicy = ACKTRPolicy
CnnPolicy = ACKTRCnnPolicy
MultiInputPolicy = ACKTRMultiInputPolicy

__all__ = ["ACKTR", "ACKTRCnnPolicy", "ACKTRMultiInputPolicy", "ACKTRPolicy", "CnnPolicy",
           "MlpPolicy", "MultiInputPolicy"]
