"""A small ASGI WebSocket echo for Hypercorn: the server side of the interop test of
yamabiko's HTTP/2 client (scripts/h2-interop-test.sh).

    hypercorn tests/interop/asgi_echo.py:app --bind 127.0.0.1:PORT

Echoes every message, except that the text "version?" is answered with the HTTP
version the WebSocket came over ("http_version=2" for an RFC 8441 extended CONNECT).
Offered subprotocols: "chat" is accepted when offered.
"""


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"asgi echo\n"})
        return
    if scope["type"] != "websocket":
        return
    event = await receive()
    if event["type"] != "websocket.connect":
        return
    accept = {"type": "websocket.accept"}
    if "chat" in scope.get("subprotocols", []):
        accept["subprotocol"] = "chat"
    await send(accept)
    while True:
        event = await receive()
        if event["type"] == "websocket.disconnect":
            return
        if event.get("text") == "version?":
            await send({"type": "websocket.send",
                        "text": f"http_version={scope['http_version']}"})
        elif event.get("text") is not None:
            await send({"type": "websocket.send", "text": event["text"]})
        elif event.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": event["bytes"]})
