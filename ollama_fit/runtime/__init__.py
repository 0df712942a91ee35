"""The program that will run the model: the llama-server command line for a placement."""

from ollama_fit.runtime.llama_server import ServeCommand, serve_command

__all__ = ["ServeCommand", "serve_command"]
