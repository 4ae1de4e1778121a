#!/usr/bin/env python3
"""A small MCP server (JSON-RPC 2.0, one object per line on stdin/stdout) for the toolbox tests.

Tools: echo {message}, add {a, b}, fail_once (an RPC error on its first call in this process), sleep {seconds},
crash (exits without answering), error (a result with isError). Flags: --notify (a notification before every
reply, written with it in one write), --grandchild (spawns a child that keeps the pipes open), --no-tools."""

import json
import os
import subprocess
import sys
import time

TOOLS = [
    {"name": "echo", "description": "Echo back the input message",
     "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}},
    {"name": "add", "description": "Add two numbers",
     "inputSchema": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}}},
    {"name": "fail_once", "description": "Fails on its first call", "inputSchema": {"type": "object"}},
    {"name": "sleep", "description": "Sleeps", "inputSchema": {"type": "object",
                                                              "properties": {"seconds": {"type": "number"}}}},
    {"name": "crash", "description": "Exits without answering", "inputSchema": {"type": "object"}},
    {"name": "error", "description": "Answers an error result", "inputSchema": {"type": "object"}},
]
failed_once = False


def text(s):
    return {"content": [{"type": "text", "text": s}]}


def call(name, args):
    global failed_once
    if name == "echo":
        return text(f"echo: {args.get('message', '')}")
    if name == "add":
        return text(str(args.get("a", 0) + args.get("b", 0)))
    if name == "fail_once":
        if not failed_once:
            failed_once = True
            raise RuntimeError("transient error")
        return text("ok")
    if name == "sleep":
        time.sleep(float(args.get("seconds", 1)))
        return text("slept")
    if name == "crash":
        os._exit(3)
    if name == "error":
        return {**text("it went wrong"), "isError": True}
    raise KeyError(name)


def main():
    if "--grandchild" in sys.argv:
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    out = sys.stdout.buffer
    for line in sys.stdin:
        try:
            req = json.loads(line)
        except ValueError:
            continue
        if "id" not in req:
            continue  # a notification
        rid, method, params = req["id"], req.get("method"), req.get("params") or {}
        if method == "initialize":
            reply = {"result": {"protocolVersion": "2024-11-05", "capabilities": {"tools": {}},
                                "serverInfo": {"name": "test", "version": "1"}}}
        elif method == "tools/list":
            reply = {"result": {"tools": [] if "--no-tools" in sys.argv else TOOLS}}
        elif method == "tools/call":
            try:
                reply = {"result": call(params.get("name"), params.get("arguments") or {})}
            except KeyError as e:
                reply = {"error": {"code": -32602, "message": f"unknown tool {e}"}}
            except RuntimeError as e:
                reply = {"error": {"code": -32000, "message": str(e)}}
        else:
            reply = {"error": {"code": -32601, "message": "Method not found"}}
        frame = json.dumps({"jsonrpc": "2.0", "id": rid, **reply}) + "\n"
        if "--notify" in sys.argv:
            frame = json.dumps({"jsonrpc": "2.0", "method": "notifications/message",
                                "params": {"level": "info", "data": "working"}}) + "\nnot json\n" + frame
        out.write(frame.encode())
        out.flush()


if __name__ == "__main__":
    main()
