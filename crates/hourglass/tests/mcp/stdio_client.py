"""Drives `hourglass mcp` with the official MCP Python SDK over stdio, as an agent host would.

Usage: stdio_client.py HOURGLASS_BINARY PLAN_JSON
PLAN_JSON is a list of [tool, arguments]. Prints one JSON object: the tool names the server
lists, and for each call either its result (isError, structuredContent, text) or the protocol
error it raised.
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client


async def main() -> None:
    binary, plan = sys.argv[1], json.loads(sys.argv[2])
    params = StdioServerParameters(
        command=binary,
        args=["mcp"],
        env={
            "HOURGLASS_SERVER": os.environ["HOURGLASS_SERVER"],
            "HOURGLASS_TOKEN": os.environ["HOURGLASS_TOKEN"],
        },
    )
    out = {"calls": []}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            out["server"] = init.server_info.name
            listed = await session.list_tools()
            out["tools"] = sorted(t.name for t in listed.tools)
            out["schemas"] = {t.name: t.input_schema for t in listed.tools}
            for name, arguments in plan:
                try:
                    r = await session.call_tool(name, arguments)
                    out["calls"].append(
                        {
                            "isError": bool(r.is_error),
                            "structured": r.structured_content,
                            "text": [c.text for c in r.content if getattr(c, "text", None)],
                        }
                    )
                except Exception as e:  # a protocol error: unknown tool, arguments that do not fit
                    out["calls"].append({"error": str(e)})
    print(json.dumps(out))


asyncio.run(main())
