// Preloaded (node --require) into a local Kinesis-API server: forces every
// listening socket onto 127.0.0.1, whatever host the server asks for, and
// reports each bound port on stdout as "sluice-listening <tls|plain> <port>"
// so the test harness can use port 0 and never race for a free port.
'use strict';
const net = require('net');
const tls = require('tls');

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  let opts = args[0];
  if (opts !== null && typeof opts === 'object' && !Array.isArray(opts)) {
    args[0] = Object.assign({}, opts, { host: '127.0.0.1' });
  } else if (typeof opts === 'number' || typeof opts === 'string') {
    // listen(port[, host][, backlog][, cb]): replace or insert the host.
    if (typeof args[1] === 'string') {
      args[1] = '127.0.0.1';
    } else {
      args.splice(1, 0, '127.0.0.1');
    }
  }
  this.once('listening', () => {
    const kind = this instanceof tls.Server ? 'tls' : 'plain';
    process.stdout.write(`sluice-listening ${kind} ${this.address().port}\n`);
  });
  return listen.apply(this, args);
};

// Exit with the harness: it closes our stdin when it goes away.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
