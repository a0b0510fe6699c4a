"""Drives Hourglass's MCP server with the official MCP Python SDK, as an agent host would:
`hourglass mcp` over stdio, or the server's `/mcp` over streamable HTTP.

Usage: client.py stdio HOURGLASS_BINARY PLAN_JSON
       client.py http URL PLAN_JSON
The agent's token is HOURGLASS_TOKEN (and, for stdio, the server HOURGLASS_SERVER). PLAN_JSON
is a list of [tool, arguments]. Prints one JSON object: the tool names the server lists, and for
each call either its result (isError, structured, text, and the progress notes it sent) or the
protocol error it raised.
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def run(session: ClientSession, plan: list) -> dict:
    out = {"calls": []}
    init = await session.initialize()
    out["server"] = init.server_info.name
    listed = await session.list_tools()
    out["tools"] = sorted(t.name for t in listed.tools)
    out["schemas"] = {t.name: t.input_schema for t in listed.tools}
    for name, arguments in plan:
        notes = []

        async def progress(done, total, message, notes=notes):
            notes.append({"progress": done, "total": total, "message": message})

        try:
            r = await session.call_tool(name, arguments, progress_callback=progress)
            out["calls"].append(
                {
                    "isError": bool(r.is_error),
                    "structured": r.structured_content,
                    "text": [c.text for c in r.content if getattr(c, "text", None)],
                    "progress": notes,
                }
            )
        except Exception as e:  # a protocol error: unknown tool, arguments that do not fit
            out["calls"].append({"error": str(e)})
    return out


async def main() -> None:
    transport, where, plan = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    token = os.environ["HOURGLASS_TOKEN"]
    if transport == "stdio":
        params = StdioServerParameters(
            command=where,
            args=["mcp"],
            env={"HOURGLASS_SERVER": os.environ["HOURGLASS_SERVER"], "HOURGLASS_TOKEN": token},
        )
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                out = await run(session, plan)
    else:
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
        async with http:
            async with streamable_http_client(where, http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    out = await run(session, plan)
    print(json.dumps(out))


asyncio.run(main())
