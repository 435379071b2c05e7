// Broadcast server on uWebSockets.js, its pub/sub idiom: every connection
// subscribes to one topic when it opens, and every text or binary message received
// is published to that topic (the sender included) with app.publish. A connection
// with more than MAX_BACKPRESSURE bytes unsent is skipped until it catches up (uWS's
// policy). One thread; compression off.
// Usage: node broadcast.js [PORT] [MAX_BACKPRESSURE]
'use strict';
const uWS = require('./uws');

const port = parseInt(process.argv[2] || '9014', 10);
const maxBackpressure = parseInt(process.argv[3] || String(1024 * 1024), 10);
const app = uWS.App();
app.ws('/*', {
  compression: uWS.DISABLED,
  maxPayloadLength: 64 * 1024 * 1024,
  maxBackpressure,
  idleTimeout: 0,
  open: (ws) => {
    ws.subscribe('all');
  },
  message: (ws, message, isBinary) => {
    app.publish('all', message, isBinary);
  },
}).listen('127.0.0.1', port, (token) => {
  if (!token) {
    console.error(`broadcast-uws: cannot listen on ${port}`);
    process.exit(1);
  }
  console.log(`broadcast-uws listening on 127.0.0.1:${port}`);
});
