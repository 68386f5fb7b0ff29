"""Agents: the async protocol, scripted strategies and LLM agents."""

from agents.base import Agent, AgentView, Decision, Message, PastRound, Utterance

__all__ = ["Agent", "AgentView", "Decision", "Message", "PastRound", "Utterance"]
