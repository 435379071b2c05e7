// Loads the native uWebSockets.js addon for this Node.js, or fails: the package
// would otherwise fall back to a JavaScript implementation, which is not what the
// benchmark means to measure.
'use strict';
const path = require('path');

const name = `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
const file = path.join(__dirname, 'node_modules', 'uWebSockets.js', 'binaries', name);
try {
  module.exports = require(file);
} catch (e) {
  console.error(`no native uWebSockets.js for this Node.js (${name}): ${e.message}`);
  process.exit(1);
}
