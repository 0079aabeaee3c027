"use strict";
/*
 * rsocket-js 1.0.0-alpha.3 TCP server with resumption: an interop peer for
 * tests/test_interop_resume_js.py.
 *
 *   node v1/resume_server.js [--host 127.0.0.1] [--session-timeout MS]
 *
 * The session timeout (how long a session whose transport was lost is kept for a RESUME) comes
 * from --session-timeout, else the RESUME_SESSION_TIMEOUT environment variable, else 30000 ms.
 * alpha.3 needs it: without one its server drops a session as soon as the transport is lost.
 *
 * Listens on an ephemeral port, prints `PORT <n>`, serves until stdin closes. Handler contract
 * (state is per session, i.e. it survives resumption; data as latin-1 text):
 *
 *   request-response  "fnf-log"  -> JSON list of the fire-and-forget data received so far
 *                     "error"    -> ERROR[APPLICATION_ERROR, "boom"]
 *                     other      -> data "echo:" + data, metadata as received
 *   fire-and-forget   recorded for "fnf-log"
 *   request-stream    "count N"  -> "0" .. "N-1", never more than requested; the last one with
 *                                   COMPLETE (N = 0: a bare COMPLETE)
 */
const net = require("net");
const { RSocketServer, RSocketError, ErrorCodes } = require("rsocket-core");
const { TcpServerTransport } = require("rsocket-tcp-server");
const { parseArgs, announcePort, text, bytes } = require("../common");

const args = parseArgs(process.argv.slice(2), {
  host: "127.0.0.1",
  "session-timeout": process.env.RESUME_SESSION_TIMEOUT || "30000",
});

/** "count N" -> N, else null. */
function countOf(data) {
  const match = /^count ([0-9]+)$/.exec(text(data) || "");
  return match === null ? null : Number(match[1]);
}

/** The responder of one session. */
function responder() {
  const fnfLog = [];

  return {
    fireAndForget(payload, peer) {
      fnfLog.push(text(payload.data));
      return { cancel() {} };
    },

    requestResponse(payload, peer) {
      const data = text(payload.data);
      if (data === "error") {
        peer.onError(new RSocketError(ErrorCodes.APPLICATION_ERROR, "boom"));
      } else if (data === "fnf-log") {
        peer.onNext({ data: bytes(JSON.stringify(fnfLog)) }, true);
      } else {
        peer.onNext({ data: bytes("echo:" + data), metadata: payload.metadata }, true);
      }
      return { cancel() {}, onExtension() {} };
    },

    requestStream(payload, initialN, peer) {
      const count = countOf(payload.data);
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
          peer.onNext({ data: bytes(String(next)) }, last);
          next++;
          done = last;
        }
      }
      drain();
      return {
        request(n) {
          credit += n;
          drain();
        },
        cancel() {
          done = true;
        },
        onExtension() {},
      };
    },
  };
}

async function main() {
  let listener;
  const transport = new TcpServerTransport({
    listenOptions: { host: args.host, port: 0 },
    socketCreator: (options) => {
      listener = new net.Server(options);
      // Added before the transport's own listener, so it runs first: no Nagle delay.
      listener.on("connection", (socket) => socket.setNoDelay(true));
      return listener;
    },
  });
  const server = new RSocketServer({
    transport,
    acceptor: { accept: async (setup, remotePeer) => responder() },
    resume: { sessionTimeout: Number(args["session-timeout"]) },
  });
  const closeable = await server.bind();
  announcePort(listener.address().port, () => closeable.close());
}

main().catch((error) => {
  process.stderr.write(`v1 resume server failed: ${error && error.stack}\n`);
  process.exit(1);
});
