"""Agents: the async protocol, scripted strategies and LLM agents."""

from stagbench.agents.base import Agent, AgentView, Decision, Message, PastRound, Utterance

__all__ = ["Agent", "AgentView", "Decision", "Message", "PastRound", "Utterance"]
