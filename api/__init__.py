"""The `accord` command line, the HTTP server and the Python client SDK."""
