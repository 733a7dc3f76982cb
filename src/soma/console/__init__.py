"""The web console: server-rendered pages on the gateway, for people rather than programs.

Pages read and act through the same store, engine and services as the REST API, under the same
identity, permissions and tenant scoping; they add HTML, a session cookie and CSRF tokens.
"""
