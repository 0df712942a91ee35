from ollama_fit.cli import main

main()
