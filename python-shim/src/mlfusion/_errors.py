"""The exception of mlfusion: its message names the model, the table or the server, and the cause."""


class MlfusionError(RuntimeError):
    """A call to mlfusion failed (the engine, or a server); the message names the model and the cause."""
