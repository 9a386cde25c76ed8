"""rlgumbel: differentiable discrete action selection for reinforcement learning."""

__version__ = "0.1.0"
