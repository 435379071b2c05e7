// Echo server on uWebSockets.js (the native build, never the package's JavaScript
// fallback): every text or binary message goes back unchanged. One thread, as Node
// runs; compression off, messages up to 64 MiB, no idle timeout.
// Usage: node echo.js [PORT]
'use strict';
const uWS = require('./uws');

const port = parseInt(process.argv[2] || '9004', 10);
uWS.App().ws('/*', {
  compression: uWS.DISABLED,
  maxPayloadLength: 64 * 1024 * 1024,
  // Large echoes (1 MiB) are buffered whole when the socket is full.
  maxBackpressure: 128 * 1024 * 1024,
  idleTimeout: 0,
  message: (ws, message, isBinary) => {
    ws.send(message, isBinary);
  },
}).listen('127.0.0.1', port, (token) => {
  if (!token) {
    console.error(`echo-uws: cannot listen on ${port}`);
    process.exit(1);
  }
  console.log(`echo-uws listening on 127.0.0.1:${port}`);
});
