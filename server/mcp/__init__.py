"""The MCP surface: tools an AI assistant calls, each a few lines into ExecService."""
