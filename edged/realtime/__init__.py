"""The OpenAI Realtime API (GA shape): sans-I/O protocol core, session shell, local server."""
