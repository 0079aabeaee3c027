"use strict";
/*
 * rsocket-js 0.0.27 server: an interop peer for tests/test_interop_rsocket_js.py.
 *
 *   node v0/server.js [--transport tcp|ws] [--host 127.0.0.1]
 *
 * Listens on an ephemeral port (TCP, or WebSocket at any path), prints `PORT <n>`, serves until
 * stdin closes. The handler contract is v1/server.js's (state per connection), plus:
 *
 *   request-response  "push-log" -> JSON list of the METADATA_PUSH metadata received so far
 *   metadata-push     recorded for "push-log"
 *
 * 0.0.27 writes PAYLOAD frames of its responder without the M flag, so response metadata never
 * reaches the requester even though the handler returns it.
 */
const net = require("net");
const WebSocket = require("ws");
const { RSocketServer, BufferEncoders } = require("rsocket-core");
const { Flowable, Single } = require("rsocket-flowable");
const RSocketTCPServer = require("rsocket-tcp-server").default;
const RSocketWebSocketServer = require("rsocket-websocket-server").default;
const { parseArgs, announcePort, text, bytes, streamCount } = require("../common");

/** Inbound credit the channel responder grants per REQUEST_N. */
const CHANNEL_BATCH = 2;

const args = parseArgs(process.argv.slice(2), { transport: "tcp", host: "127.0.0.1" });

/** A Flowable that emits `items` (payloads) within its subscriber's credit, then `error` or completes. */
function boundedFlowable(items, error, onRequest) {
  return new Flowable((subscriber) => {
    let next = 0;
    let credit = 0;
    let done = false;
    function drain() {
      while (!done && credit > 0 && next < items.length) {
        credit--;
        subscriber.onNext(items[next++]);
      }
      if (!done && next === items.length) {
        done = true;
        if (error) {
          subscriber.onError(error);
        } else {
          subscriber.onComplete();
        }
      }
    }
    subscriber.onSubscribe({
      request(n) {
        onRequest(n);
        credit += n;
        drain();
      },
      cancel() {
        done = true;
      },
    });
  });
}

/** The request handler of one connection. */
function handler() {
  const fnfLog = [];
  const pushLog = [];
  let streamCredits = [];
  let channelState = { inbound: [], complete: false };

  return {
    fireAndForget(payload) {
      fnfLog.push(text(payload.data));
    },

    metadataPush(payload) {
      pushLog.push(text(payload.metadata));
      return Single.of(undefined);
    },

    requestResponse(payload) {
      const data = text(payload.data);
      if (data === "error") {
        return Single.error(new Error("boom"));
      }
      const logs = {
        "fnf-log": fnfLog,
        "push-log": pushLog,
        "stream-credits": streamCredits,
        "channel-state": channelState,
      };
      if (data in logs) {
        return Single.of({ data: bytes(JSON.stringify(logs[data])) });
      }
      return Single.of({ data: bytes("echo:" + data), metadata: payload.metadata });
    },

    requestStream(payload) {
      const credits = [];
      streamCredits = credits;
      const record = (n) => credits.push(n);
      if (text(payload.data) === "error") {
        return boundedFlowable([{ data: bytes("item-0") }], new Error("stream-boom"), record);
      }
      const count = streamCount(payload.data);
      if (count === null) {
        return Flowable.error(new Error("not a count"));
      }
      const items = [];
      for (let index = 0; index < count; index++) {
        items.push({ data: bytes(`item-${index}`) });
      }
      return boundedFlowable(items, null, record);
    },

    // `payloads` holds every requester element, the first (from REQUEST_CHANNEL) included.
    requestChannel(payloads) {
      const state = { inbound: [], complete: false };
      channelState = state;
      return new Flowable((subscriber) => {
        const pending = [];
        let credit = 0;
        let inboundDone = false;
        let done = false;
        let sinceRequest = 0;
        let inbound = null;
        function drain() {
          while (!done && credit > 0 && pending.length > 0) {
            credit--;
            subscriber.onNext(pending.shift());
          }
          if (!done && inboundDone && pending.length === 0) {
            done = true;
            subscriber.onComplete();
          }
        }
        subscriber.onSubscribe({
          request(n) {
            credit += n;
            drain();
          },
          cancel() {
            done = true;
            pending.length = 0;
            if (inbound) {
              inbound.cancel();
            }
          },
        });
        payloads.subscribe({
          onSubscribe(subscription) {
            inbound = subscription;
            // The first request(n) releases the REQUEST_CHANNEL element and sends REQUEST_N(n - 1).
            subscription.request(1 + CHANNEL_BATCH);
          },
          onNext(item) {
            state.inbound.push(text(item.data));
            pending.push({ data: bytes("echo:" + text(item.data)) });
            if (state.inbound.length > 1 && ++sinceRequest === CHANNEL_BATCH) {
              sinceRequest = 0;
              inbound.request(CHANNEL_BATCH);
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
        });
      });
    },
  };
}

function main() {
  let listener; // the net.Server or ws.Server, for its port
  let transport;
  if (args.transport === "tcp") {
    transport = new RSocketTCPServer(
      {
        serverFactory: (onConnection) => {
          listener = net.createServer((socket) => {
            socket.setNoDelay(true);
            onConnection(socket);
          });
          return listener;
        },
        host: args.host,
        port: 0,
      },
      BufferEncoders
    );
  } else if (args.transport === "ws") {
    transport = new RSocketWebSocketServer({ host: args.host, port: 0 }, BufferEncoders, (options) => {
      listener = new WebSocket.Server(options); // ws sets TCP_NODELAY on its sockets itself
      return listener;
    });
  } else {
    throw new Error(`unknown transport ${args.transport}`);
  }
  const server = new RSocketServer({
    transport,
    getRequestHandler: (socket, setupPayload) => handler(),
  });
  server.start(); // creates the listener
  listener.on("listening", () => announcePort(listener.address().port, () => server.stop()));
  listener.on("error", (error) => {
    process.stderr.write(`v0 server failed: ${error && error.stack}\n`);
    process.exit(1);
  });
}

main();
