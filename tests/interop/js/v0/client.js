"use strict";
/*
 * rsocket-js 0.0.27 client: an interop peer for tests/test_interop_rsocket_js.py.
 *
 *   node v0/client.js --port N [--host 127.0.0.1] [--transport tcp|ws] [--timeout 20]
 *
 * Runs the same script as v1/client.js (see there) and prints the same JSON lines.
 */
const net = require("net");
const WebSocket = require("ws");
const { RSocketClient, BufferEncoders } = require("rsocket-core");
const { Flowable } = require("rsocket-flowable");
const RSocketTcpClient = require("rsocket-tcp-client").default;
const RSocketWebSocketClient = require("rsocket-websocket-client").default;
const { parseArgs, report, text, bytes, deadline } = require("../common");

const args = parseArgs(process.argv.slice(2), { host: "127.0.0.1", transport: "tcp", timeout: "20" });

function transport() {
  if (args.transport === "tcp") {
    return new RSocketTcpClient({ host: args.host, port: Number(args.port), noDelay: true }, BufferEncoders);
  }
  if (args.transport === "ws") {
    // Node 20 has no global WebSocket.
    return new RSocketWebSocketClient(
      { url: `ws://${args.host}:${args.port}/`, wsCreator: (url) => new WebSocket(url) },
      BufferEncoders
    );
  }
  throw new Error(`unknown transport ${args.transport}`);
}

/** 0.0.27 keeps an ERROR frame's code and message in `error.source`. */
function describeError(error) {
  const source = error.source || {};
  return {
    code: source.code === undefined ? null : source.code,
    message: source.message === undefined ? error.message : source.message,
  };
}

function connect(client) {
  return new Promise((resolve, reject) => {
    client.connect().subscribe({ onComplete: resolve, onError: reject, onSubscribe() {} });
  });
}

function requestResponse(socket, payload) {
  return new Promise((resolve, reject) => {
    socket.requestResponse(payload).subscribe({ onComplete: resolve, onError: reject, onSubscribe() {} });
  });
}

/** Request-stream with manual credit: `initial` first, `batch` more each time `batch` arrived. */
function requestStream(socket, payload, initial, batch) {
  return new Promise((resolve) => {
    const items = [];
    const credits = [initial];
    let granted = initial;
    let overflow = false;
    let sinceRequest = 0;
    let subscription = null;
    socket.requestStream(payload).subscribe({
      onSubscribe(sub) {
        subscription = sub;
        sub.request(initial);
      },
      onNext(item) {
        items.push(text(item.data));
        overflow = overflow || items.length > granted;
        if (++sinceRequest === batch) {
          sinceRequest = 0;
          credits.push(batch);
          granted += batch;
          subscription.request(batch);
        }
      },
      onComplete: () => resolve({ items, credits, overflow, error: null }),
      onError: (error) => resolve({ items, credits, overflow, error: describeError(error) }),
    });
  });
}

/** Request-channel whose elements go out only within the responder's credit, then complete. */
function requestChannel(socket, elements, inboundCredit) {
  const outbound = new Flowable((subscriber) => {
    const pending = elements.slice();
    let credit = 0;
    let done = false;
    subscriber.onSubscribe({
      request(n) {
        credit += n;
        while (!done && credit > 0 && pending.length > 0) {
          credit--;
          subscriber.onNext(pending.shift());
        }
        if (!done && pending.length === 0) {
          done = true;
          subscriber.onComplete();
        }
      },
      cancel() {
        done = true;
      },
    });
  });
  return new Promise((resolve, reject) => {
    const items = [];
    socket.requestChannel(outbound).subscribe({
      onSubscribe: (sub) => sub.request(inboundCredit),
      onNext: (item) => items.push(text(item.data)),
      onComplete: () => resolve(items),
      onError: reject,
    });
  });
}

async function main() {
  deadline(Number(args.timeout));
  const client = new RSocketClient({
    setup: {
      keepAlive: 20000,
      lifetime: 90000,
      dataMimeType: "application/octet-stream",
      metadataMimeType: "application/octet-stream",
    },
    transport: transport(),
  });
  const socket = await connect(client);

  let reply = await requestResponse(socket, { data: bytes("hello"), metadata: bytes("meta") });
  report("rr", { data: text(reply.data), metadata: text(reply.metadata) });

  reply = await requestResponse(socket, { data: bytes("plain") });
  report("rr-plain", { data: text(reply.data), metadata: text(reply.metadata) });

  reply = await requestResponse(socket, { data: bytes("null-metadata"), metadata: null });
  report("rr-null-metadata", { data: text(reply.data), metadata: text(reply.metadata) });

  try {
    await requestResponse(socket, { data: bytes("error") });
    report("rr-error", { error: null });
  } catch (error) {
    report("rr-error", { error: describeError(error) });
  }

  socket.fireAndForget({ data: bytes("x") });
  let log = [];
  while (log.length === 0) {
    log = JSON.parse(text((await requestResponse(socket, { data: bytes("fnf-log") })).data));
  }
  report("fnf", { log });

  report("stream", await requestStream(socket, { data: bytes("10") }, 3, 3));
  report("stream-error", await requestStream(socket, { data: bytes("error") }, 5, 5));

  const echoes = await requestChannel(
    socket,
    [{ data: bytes("a") }, { data: bytes("b") }, { data: bytes("c") }],
    10
  );
  report("channel", { items: echoes });

  report("done", {});
  client.close();
  process.exit(0);
}

main().catch((error) => {
  process.stderr.write(`v0 client failed: ${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
