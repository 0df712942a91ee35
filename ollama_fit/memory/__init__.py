"""What llama.cpp allocates for a model on each device (weights, KV cache and state, compute and output
buffers, runtime overhead), from its tensor table and the runner's settings."""

from ollama_fit.memory.estimate import DeviceMemory, MemoryEstimate, Runtime, estimate

__all__ = ["DeviceMemory", "MemoryEstimate", "Runtime", "estimate"]
