"use strict";
/*
 * rsocket-js 1.0.0-alpha.3 server: an interop peer for tests/test_interop_rsocket_js.py.
 *
 *   node v1/server.js [--transport tcp|ws] [--host 127.0.0.1]
 *
 * Listens on an ephemeral port (TCP, or WebSocket at any path), prints `PORT <n>`, serves until
 * stdin closes. Handler contract (data and metadata as bytes; state is per connection):
 *
 *   request-response  "error"          -> ERROR[APPLICATION_ERROR, "boom"]
 *                     "fnf-log"        -> JSON list of the fire-and-forget data received so far
 *                     "stream-credits" -> JSON list of the credits the latest stream received
 *                                         (its initial n, then each REQUEST_N)
 *                     "channel-state"  -> JSON {"inbound": [...], "complete": bool} of the latest
 *                                         channel: the elements it received (the first included)
 *                                         and whether the requester completed its half
 *                     anything else    -> data "echo:" + data, metadata as received
 *   fire-and-forget   recorded for "fnf-log"
 *   request-stream    "N"              -> item-0 .. item-(N-1), never more than requested; the last
 *                                         one with COMPLETE (N = 0: a bare COMPLETE)
 *                     "error"          -> item-0, then ERROR[APPLICATION_ERROR, "stream-boom"]
 *   request-channel   every inbound element is echoed as "echo:" + data within the requester's
 *                     credit; inbound credit is granted 2 at a time; COMPLETE after the inbound
 *                     side completed and every echo went out
 *   metadata-push     none: alpha.3 cannot receive METADATA_PUSH
 */
const net = require("net");
const { RSocketServer, RSocketError, ErrorCodes } = require("rsocket-core");
const { TcpServerTransport } = require("rsocket-tcp-server");
const { WebsocketServerTransport } = require("rsocket-websocket-server");
const WebSocket = require("ws");
const { parseArgs, announcePort, text, bytes, streamCount } = require("../common");

/** Inbound credit the channel responder grants per REQUEST_N. */
const CHANNEL_BATCH = 2;

const args = parseArgs(process.argv.slice(2), { transport: "tcp", host: "127.0.0.1" });

/** The responder of one connection. */
function responder() {
  const fnfLog = [];
  let streamCredits = [];
  let channelState = { inbound: [], complete: false };

  function reply(peer, data, metadata) {
    peer.onNext({ data: bytes(data), metadata: metadata }, true);
    return { cancel() {}, onExtension() {} };
  }

  return {
    fireAndForget(payload, peer) {
      fnfLog.push(text(payload.data));
      return { cancel() {} };
    },

    requestResponse(payload, peer) {
      const data = text(payload.data);
      if (data === "error") {
        peer.onError(new RSocketError(ErrorCodes.APPLICATION_ERROR, "boom"));
        return { cancel() {}, onExtension() {} };
      }
      if (data === "fnf-log") {
        return reply(peer, JSON.stringify(fnfLog));
      }
      if (data === "stream-credits") {
        return reply(peer, JSON.stringify(streamCredits));
      }
      if (data === "channel-state") {
        return reply(peer, JSON.stringify(channelState));
      }
      return reply(peer, "echo:" + data, payload.metadata);
    },

    requestStream(payload, initialN, peer) {
      const credits = [initialN];
      streamCredits = credits;
      if (text(payload.data) === "error") {
        peer.onNext({ data: bytes("item-0") }, false);
        peer.onError(new RSocketError(ErrorCodes.APPLICATION_ERROR, "stream-boom"));
        return { request() {}, cancel() {}, onExtension() {} };
      }
      const count = streamCount(payload.data);
      if (count === null) {
        peer.onError(new RSocketError(ErrorCodes.APPLICATION_ERROR, "not a count"));
        return { request() {}, cancel() {}, onExtension() {} };
      }
      let next = 0;
      let credit = initialN;
      let done = false;
      function drain() {
        if (done) {
          return;
        }
        if (count === 0) {
          done = true;
          peer.onComplete();
          return;
        }
        while (credit > 0 && next < count) {
          credit--;
          const last = next === count - 1;
          peer.onNext({ data: bytes(`item-${next}`) }, last);
          next++;
          if (last) {
            done = true;
          }
        }
      }
      drain();
      return {
        request(n) {
          credits.push(n);
          credit += n;
          drain();
        },
        cancel() {
          done = true;
        },
        onExtension() {},
      };
    },

    requestChannel(payload, initialN, isCompleted, peer) {
      const state = { inbound: [text(payload.data)], complete: isCompleted };
      channelState = state;
      const pending = [{ data: bytes("echo:" + text(payload.data)) }];
      let credit = initialN;
      let inboundDone = isCompleted;
      let done = false;
      let sinceRequest = 0;
      function drain() {
        while (!done && credit > 0 && pending.length > 0) {
          credit--;
          const item = pending.shift();
          const last = inboundDone && pending.length === 0;
          done = last;
          peer.onNext(item, last);
        }
        if (!done && inboundDone && pending.length === 0) {
          done = true;
          peer.onComplete();
        }
      }
      if (!inboundDone) {
        peer.request(CHANNEL_BATCH);
      }
      drain();
      return {
        onNext(item, isComplete) {
          state.inbound.push(text(item.data));
          state.complete = isComplete;
          pending.push({ data: bytes("echo:" + text(item.data)) });
          if (isComplete) {
            inboundDone = true;
          } else if (++sinceRequest === CHANNEL_BATCH) {
            sinceRequest = 0;
            peer.request(CHANNEL_BATCH);
          }
          drain();
        },
        onComplete() {
          state.complete = true;
          inboundDone = true;
          drain();
        },
        onError(error) {
          done = true;
          pending.length = 0;
        },
        onExtension() {},
        request(n) {
          credit += n;
          drain();
        },
        cancel() {
          done = true;
          pending.length = 0;
        },
      };
    },
  };
}

async function main() {
  let listener; // the net.Server or ws.Server, for its port
  let transport;
  if (args.transport === "tcp") {
    transport = new TcpServerTransport({
      listenOptions: { host: args.host, port: 0 },
      socketCreator: (options) => {
        listener = new net.Server(options);
        // Added before the transport's own listener, so it runs first: no Nagle delay.
        listener.on("connection", (socket) => socket.setNoDelay(true));
        return listener;
      },
    });
  } else if (args.transport === "ws") {
    transport = new WebsocketServerTransport({
      host: args.host,
      port: 0,
      wsCreator: (options) => {
        listener = new WebSocket.Server(options); // ws sets TCP_NODELAY on its sockets itself
        return listener;
      },
    });
  } else {
    throw new Error(`unknown transport ${args.transport}`);
  }
  const server = new RSocketServer({
    transport,
    acceptor: { accept: async (setup, remotePeer) => responder() },
  });
  const closeable = await server.bind();
  announcePort(listener.address().port, () => closeable.close());
}

main().catch((error) => {
  process.stderr.write(`v1 server failed: ${error && error.stack}\n`);
  process.exit(1);
});
