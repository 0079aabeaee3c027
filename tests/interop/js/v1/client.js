"use strict";
/*
 * rsocket-js 1.0.0-alpha.3 client: an interop peer for tests/test_interop_rsocket_js.py.
 *
 *   node v1/client.js --port N [--host 127.0.0.1] [--transport tcp|ws] [--timeout 20]
 *
 * Connects (WebSocket: ws://host:port/), runs the script below against the test's server and
 * prints one JSON line per step, {"step": name, ...}; exits 0 after the last ("done"), 1 on any
 * failure or after --timeout seconds. The server's contract: "echo:" + data with the metadata
 * echoed, "error" -> APPLICATION_ERROR "boom", "fnf-log" -> JSON list of fire-and-forget data,
 * streams "N" -> item-0 .. item-(N-1) and "error" -> item-0 then "stream-boom", channels echo.
 *
 *   rr                request-response "hello" with metadata "meta"
 *   rr-plain          request-response "plain" without metadata
 *   rr-null-metadata  request-response "null-metadata" with `metadata: null`
 *   rr-error          request-response "error": the error's code and message
 *   fnf               fire-and-forget "x", then "fnf-log" polled until it is not empty
 *   stream            request-stream "10" with initial credit 3, 3 more each time 3 arrived;
 *                     reports the items, the credits granted and whether more arrived than granted
 *   stream-error      request-stream "error" with credit 5
 *   channel           request-channel "a", then "b" and "c" within the server's credit, then
 *                     complete; inbound credit 10
 *   done
 */
const net = require("net");
const WebSocket = require("ws");
const { RSocketConnector } = require("rsocket-core");
const { TcpClientTransport } = require("rsocket-tcp-client");
const { WebsocketClientTransport } = require("rsocket-websocket-client");
const { parseArgs, report, text, bytes, deadline } = require("../common");

const args = parseArgs(process.argv.slice(2), { host: "127.0.0.1", transport: "tcp", timeout: "20" });

function transport() {
  if (args.transport === "tcp") {
    return new TcpClientTransport({
      connectionOptions: { host: args.host, port: Number(args.port) },
      socketCreator: (options) => net.connect(options).setNoDelay(true),
    });
  }
  if (args.transport === "ws") {
    // Node 20 has no global WebSocket: the transport's default creator would throw.
    return new WebsocketClientTransport({
      url: `ws://${args.host}:${args.port}/`,
      wsCreator: (url) => new WebSocket(url),
    });
  }
  throw new Error(`unknown transport ${args.transport}`);
}

function describeError(error) {
  return { code: error.code === undefined ? null : error.code, message: error.message };
}

function requestResponse(rsocket, payload) {
  return new Promise((resolve, reject) => {
    rsocket.requestResponse(payload, {
      onNext: (reply) => resolve(reply),
      onComplete: () => resolve(null),
      onError: reject,
      onExtension() {},
    });
  });
}

/** Request-stream with manual credit: `initial` first, `batch` more each time `batch` arrived. */
function requestStream(rsocket, payload, initial, batch) {
  return new Promise((resolve) => {
    const items = [];
    const credits = [initial];
    let granted = initial;
    let overflow = false;
    let sinceRequest = 0;
    const subscription = rsocket.requestStream(payload, initial, {
      onNext(item, isComplete) {
        items.push(text(item.data));
        overflow = overflow || items.length > granted;
        if (!isComplete && ++sinceRequest === batch) {
          sinceRequest = 0;
          credits.push(batch);
          granted += batch;
          subscription.request(batch);
        }
        if (isComplete) {
          resolve({ items, credits, overflow, error: null });
        }
      },
      onComplete: () => resolve({ items, credits, overflow, error: null }),
      onError: (error) => resolve({ items, credits, overflow, error: describeError(error) }),
      onExtension() {},
    });
  });
}

/** Request-channel sending `first` then `rest` only within the responder's credit, then complete. */
function requestChannel(rsocket, first, rest, inboundCredit) {
  return new Promise((resolve, reject) => {
    const items = [];
    const outbound = rest.slice();
    let credit = 0;
    let requester = null;
    function drain() {
      while (requester && credit > 0 && outbound.length > 0) {
        credit--;
        requester.onNext(outbound.shift(), outbound.length === 0);
      }
    }
    requester = rsocket.requestChannel(first, inboundCredit, rest.length === 0, {
      onNext(item, isComplete) {
        items.push(text(item.data));
        if (isComplete) {
          resolve(items);
        }
      },
      onComplete: () => resolve(items),
      onError: reject,
      onExtension() {},
      request(n) {
        credit += n;
        drain();
      },
      cancel() {
        outbound.length = 0;
      },
    });
    drain();
  });
}

async function main() {
  deadline(Number(args.timeout));
  const connector = new RSocketConnector({
    setup: { keepAlive: 20000, lifetime: 90000 },
    transport: transport(),
  });
  const rsocket = await connector.connect();

  let reply = await requestResponse(rsocket, { data: bytes("hello"), metadata: bytes("meta") });
  report("rr", { data: text(reply.data), metadata: text(reply.metadata) });

  reply = await requestResponse(rsocket, { data: bytes("plain") });
  report("rr-plain", { data: text(reply.data), metadata: text(reply.metadata) });

  reply = await requestResponse(rsocket, { data: bytes("null-metadata"), metadata: null });
  report("rr-null-metadata", { data: text(reply.data), metadata: text(reply.metadata) });

  try {
    await requestResponse(rsocket, { data: bytes("error") });
    report("rr-error", { error: null });
  } catch (error) {
    report("rr-error", { error: describeError(error) });
  }

  await new Promise((resolve, reject) => {
    rsocket.fireAndForget({ data: bytes("x") }, { onComplete: resolve, onError: reject });
  });
  let log = [];
  while (log.length === 0) {
    log = JSON.parse(text((await requestResponse(rsocket, { data: bytes("fnf-log") })).data));
  }
  report("fnf", { log });

  report("stream", await requestStream(rsocket, { data: bytes("10") }, 3, 3));
  report("stream-error", await requestStream(rsocket, { data: bytes("error") }, 5, 5));

  const echoes = await requestChannel(
    rsocket,
    { data: bytes("a") },
    [{ data: bytes("b") }, { data: bytes("c") }],
    10
  );
  report("channel", { items: echoes });

  report("done", {});
  rsocket.close();
  process.exit(0);
}

main().catch((error) => {
  process.stderr.write(`v1 client failed: ${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
