"""The MCP server for AI agents: one more front end of the API (see docs/mcp.md).

`service` does the tools' work over the API, `tools` puts it on the SDK's MCPServer, `plans`
keeps the plans an agent was shown, `http` + `guard` + `token` serve it over HTTP, `page` is
the live page beside it, `topology` the picture of what is wired to what.
"""
