"""The MCP surface: tools an AI assistant calls, each a few lines into ExecService.

registry.py   the server: which tools, their titles, annotations and instructions
tools.py      the tool bodies: build a request, call the service, render
render.py     service results as structured content plus a fenced text
models.py     the output schemas
progress.py   output chunks of a running command as progress notifications
auth.py       who calls: the stdio principal, bearer tokens over HTTP
http.py       /mcp in `execgate serve` (streamable HTTP)
stdio.py      `execgate mcp` (stdio)
"""
