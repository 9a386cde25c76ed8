"""Learning rules. Each takes a selector and returns metrics from `update()`."""

from rlgumbel.agents.actor_critic import ActorCritic

__all__ = ["ActorCritic"]
