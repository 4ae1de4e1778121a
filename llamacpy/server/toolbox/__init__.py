"""Tools for agents at GET/POST /tools, as llama-server: the built-in tools of `--tools` (builtin.py), run on
this host or in the isolate of `--tools-runtime` / the request's `x-tool-runtime` (runtime.py), and the tools of
the MCP servers of `--mcp-servers-config` / `--mcp-servers-json` (mcp.py), named `<server>_<tool>`.

    GET  /tools                              every tool: {tool, display_name, type, permissions, uses_cwd, definition}
    POST /tools {tool, params}               the tool's answer (an "error" field when it failed)
    POST /tools {tool, params, stream: true} SSE frames {"chunk": ...}, then {"done": true[, "error": ...]}

Headers, never the model, set where a call runs: `x-tool-cwd` (relative paths and the working directory),
`x-tool-runtime` (an isolate) and `x-resp-type: base64` (read_file). Without --tools or MCP servers both routes
answer 403, as llama-server's do.
"""

from .box import Toolbox, tools_get, tools_post

__all__ = ["Toolbox", "tools_get", "tools_post"]
