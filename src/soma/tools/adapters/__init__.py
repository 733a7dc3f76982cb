"""Tools that act on external services (GitHub, Slack, AWS, HTTP) with the tenant's credentials.

They run in the worker, not the sandbox (they need the network the sandbox withholds), read
credentials through ``ToolContext.secrets`` and never put them in what the model sees.
"""
