"""The program that will run the model: what each Ollama version launches and with which settings (ollama.py,
docs/ollama.md), and the llama-server command line for a placement (llama_server.py)."""

from ollama_fit.runtime.llama_server import ServeCommand, serve_command
from ollama_fit.runtime.ollama import NEWEST, OllamaLoad, parse_version, plan_load

__all__ = ["NEWEST", "OllamaLoad", "ServeCommand", "parse_version", "plan_load", "serve_command"]
