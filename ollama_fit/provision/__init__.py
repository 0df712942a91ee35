"""Putting a model on this machine: what `pull` fetches and registers, and `auto`'s whole run after the
confirmation (pull, register, smoke test, learning)."""

from ollama_fit.provision.auto import AutoResult, execute, prepare
from ollama_fit.provision.pull import PullResult, Target, pull, resolve

__all__ = ["AutoResult", "PullResult", "Target", "execute", "prepare", "pull", "resolve"]
