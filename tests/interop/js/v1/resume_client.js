"use strict";
/*
 * rsocket-js 1.0.0-alpha.3 TCP client with resumption: an interop peer for
 * tests/test_interop_resume_js.py.
 *
 *   node v1/resume_client.js --port N [--host 127.0.0.1] [--count 2000] [--batch 64]
 *                            [--fnf 3] [--timeout 20]
 *
 * Connects with resumption enabled (a random 16-byte token; each reconnect attempt waits 50 ms),
 * then, against a server with the contract of resume_server.js:
 *
 *   1. fire-and-forget "before-0" .. "before-(fnf-1)"
 *   2. request-stream "count N" with credit `batch` at a time (`batch` more each time `batch`
 *      arrived); prints {"step": "item", "data": ...} for each item as it arrives
 *   3. fire-and-forget "after-0" .. "after-(fnf-1)"
 *   4. request-response "hello" (expects "echo:hello"), then "fnf-log" until it lists 2 * fnf
 *      entries (or more)
 *   5. prints {"step": "done", "items": <count received>, "overflow": bool, "echo": ...,
 *      "fnf_log": [...], "reconnects": <reconnect attempts>, "error": null} and exits 0
 *
 * Any failure prints {"step": "done", ..., "error": message} and exits 1; so does --timeout.
 * The test cuts the connection (a proxy) while the stream flows; the items must still arrive
 * exactly once and in order. After the script the client exits without closing the session.
 */
const crypto = require("crypto");
const net = require("net");
const { RSocketConnector } = require("rsocket-core");
const { TcpClientTransport } = require("rsocket-tcp-client");
const { parseArgs, report, text, bytes, deadline } = require("../common");

const args = parseArgs(process.argv.slice(2), {
  host: "127.0.0.1",
  count: "2000",
  batch: "64",
  fnf: "3",
  timeout: "20",
});
const COUNT = Number(args.count);
const BATCH = Number(args.batch);
const FNF = Number(args.fnf);
/** Milliseconds before each reconnect attempt. */
const RECONNECT_DELAY = 50;

let reconnects = 0;
let received = 0;
let overflow = false;

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

function fireAndForget(rsocket, data) {
  return new Promise((resolve, reject) => {
    rsocket.fireAndForget({ data: bytes(data) }, { onComplete: resolve, onError: reject });
  });
}

/** Request-stream "count N", `batch` credits at a time; reports each item as it arrives. */
function requestStream(rsocket, count, batch) {
  return new Promise((resolve, reject) => {
    let granted = batch;
    let sinceRequest = 0;
    const subscription = rsocket.requestStream({ data: bytes(`count ${count}`) }, batch, {
      onNext(item, isComplete) {
        received++;
        overflow = overflow || received > granted;
        report("item", { data: text(item.data) });
        if (isComplete) {
          resolve();
        } else if (++sinceRequest === batch) {
          sinceRequest = 0;
          granted += batch;
          subscription.request(batch);
        }
      },
      onComplete: () => resolve(),
      onError: reject,
      onExtension() {},
    });
  });
}

async function main() {
  deadline(Number(args.timeout));
  const connector = new RSocketConnector({
    setup: { keepAlive: 20000, lifetime: 90000 },
    transport: new TcpClientTransport({
      connectionOptions: { host: args.host, port: Number(args.port) },
      socketCreator: (options) => net.connect(options).setNoDelay(true),
    }),
    resume: {
      tokenGenerator: () => crypto.randomBytes(16),
      reconnectFunction: (attempt) => {
        reconnects++;
        return new Promise((resolve) => setTimeout(resolve, RECONNECT_DELAY));
      },
    },
  });
  const rsocket = await connector.connect();

  for (let index = 0; index < FNF; index++) {
    await fireAndForget(rsocket, `before-${index}`);
  }
  await requestStream(rsocket, COUNT, BATCH);
  for (let index = 0; index < FNF; index++) {
    await fireAndForget(rsocket, `after-${index}`);
  }
  const echo = text((await requestResponse(rsocket, { data: bytes("hello") })).data);
  let log = [];
  while (log.length < 2 * FNF) {
    log = JSON.parse(text((await requestResponse(rsocket, { data: bytes("fnf-log") })).data));
  }
  report("done", { items: received, overflow, echo, fnf_log: log, reconnects, error: null });
  process.exit(0);
}

main().catch((error) => {
  const message = error && error.message ? error.message : String(error);
  report("done", { items: received, overflow, echo: null, fnf_log: null, reconnects, error: message });
  process.stderr.write(`v1 resume client failed: ${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
