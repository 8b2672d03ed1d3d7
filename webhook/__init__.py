"""The HTTP surface of the agent (webhooks, /status, /metrics): built on agent/, never imported by it."""
