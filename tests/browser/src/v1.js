// The AnyioRSocketBrowser API over rsocket-js 1.0.0-alpha.3 (see api.js).
import { Flags, FrameTypes, RSocketConnector } from "rsocket-core";
import { WebsocketClientTransport } from "rsocket-websocket-client";
import { install, RSocketError } from "./api.js";

const bytes = (value) => (value === null || value === undefined ? undefined : Buffer.from(value, "utf8"));
const text = (buffer) => (buffer === null || buffer === undefined ? null : buffer.toString("utf8"));
const toWire = (payload) => ({ data: bytes(payload.data ?? ""), metadata: bytes(payload.metadata) });
const fromWire = (payload) => ({ data: text(payload.data), metadata: text(payload.metadata) });
const asError = (error) =>
  error instanceof RSocketError
    ? error
    : new RSocketError(error && error.code !== undefined ? error.code : null, String(error && error.message));

async function connect(url, { keepAlive = 20000, lifetime = 90000 } = {}) {
  const connector = new RSocketConnector({
    setup: {
      keepAlive,
      lifetime,
      dataMimeType: "application/octet-stream",
      metadataMimeType: "application/octet-stream",
    },
    // Its default creator is `new WebSocket(url)`; its connect rejects with the error event's
    // `.error`, which browsers leave undefined: say what failed instead.
    transport: new WebsocketClientTransport({ url, wsCreator: (address) => new WebSocket(address) }),
  });
  let rsocket;
  try {
    rsocket = await connector.connect();
  } catch (error) {
    throw new RSocketError(null, error ? String(error.message || error) : `cannot connect to ${url}`);
  }
  return new Client(rsocket);
}

class Client {
  constructor(rsocket) {
    this.rsocket = rsocket;
  }

  requestResponse(payload) {
    return new Promise((resolve, reject) => {
      this.rsocket.requestResponse(toWire(payload), {
        onNext: (reply) => resolve(fromWire(reply)),
        onComplete: () => resolve(null),
        onError: (error) => reject(asError(error)),
        onExtension() {},
      });
    });
  }

  requestStream(payload, initialN, { onNext, onComplete = () => {}, onError = () => {} }) {
    const subscription = this.rsocket.requestStream(toWire(payload), initialN, {
      onNext(item, isComplete) {
        onNext(fromWire(item));
        if (isComplete) {
          onComplete();
        }
      },
      onComplete,
      onError: (error) => onError(asError(error)),
      onExtension() {},
    });
    return { request: (n) => subscription.request(n), cancel: () => subscription.cancel() };
  }

  /** Sends `payloads` (the first with REQUEST_CHANNEL, the others within the responder's credit),
   * completes its half after the last, and resolves with every payload received. */
  requestChannel(payloads, inboundCredit) {
    return new Promise((resolve, reject) => {
      const received = [];
      const outbound = payloads.slice(1).map(toWire);
      let credit = 0;
      let requester = null;
      const drain = () => {
        while (requester && credit > 0 && outbound.length > 0) {
          credit--;
          requester.onNext(outbound.shift(), outbound.length === 0);
        }
      };
      requester = this.rsocket.requestChannel(toWire(payloads[0]), inboundCredit, outbound.length === 0, {
        onNext(item, isComplete) {
          received.push(fromWire(item));
          if (isComplete) {
            resolve(received);
          }
        },
        onComplete: () => resolve(received),
        onError: (error) => reject(asError(error)),
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

  fireAndForget(payload) {
    this.rsocket.fireAndForget(toWire(payload), { onComplete() {}, onError() {} });
  }

  /** 1.0.0-alpha.3's requester cannot send METADATA_PUSH (`metadataPush` throws "Method not
   * implemented."): the frame goes out through its connection, encoded by rsocket-core itself. */
  async metadataPush(metadata) {
    this.rsocket.connection.send({
      type: FrameTypes.METADATA_PUSH,
      streamId: 0,
      flags: Flags.METADATA,
      metadata: bytes(metadata),
    });
  }

  close() {
    this.rsocket.close();
  }
}

install({ version: "1.0.0-alpha.3", connect });
