// Starts kinesalite (in memory) on 127.0.0.1 and a port the kernel picks,
// then reports it on stdout as "sluice-listening plain <port>".
// Usage: node kinesalite.js [createStreamMs [shardLimit]]
'use strict';
const kinesalite = require('kinesalite');

const createStreamMs = Number(process.argv[2] || 50);
const shardLimit = Number(process.argv[3] || 100);
const server = kinesalite({
  createStreamMs,
  deleteStreamMs: createStreamMs,
  updateStreamMs: createStreamMs,
  shardLimit,
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`sluice-listening plain ${server.address().port}\n`);
});
// Exit with the harness: it closes our stdin when it goes away.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
