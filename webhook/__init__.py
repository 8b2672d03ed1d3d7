"""The HTTP surface of the agent (webhooks, /status, /metrics).

Built on agent/; agent never imports it.
"""
