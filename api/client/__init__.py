"""The ``godwit`` admin command-line client (cliff) for the compute API."""
