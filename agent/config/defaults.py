"""The agent's default address: plain constants, so the remote commands read them without loading the schema."""

DEFAULT_PORT = 9877
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
