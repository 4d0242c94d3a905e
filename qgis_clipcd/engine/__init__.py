"""The engine environment: which Python runs the engine, installing it, and the worker process."""
