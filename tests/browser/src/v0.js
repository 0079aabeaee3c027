// The AnyioRSocketBrowser API over rsocket-js 0.0.27 (see api.js). build.mjs maps "rsocket-core"
// to "rsocket-core-v0" for this bundle.
import { BufferEncoders, RSocketClient, toBuffer } from "rsocket-core-v0";
import { Flowable } from "rsocket-flowable";
import RSocketWebSocketClient from "rsocket-websocket-client-v0";
import { install, RSocketError } from "./api.js";

const bytes = (value) => (value === null || value === undefined ? undefined : toBuffer(value, "utf8"));
const text = (buffer) => (buffer === null || buffer === undefined ? null : buffer.toString("utf8"));
const toWire = (payload) => ({ data: bytes(payload.data ?? ""), metadata: bytes(payload.metadata) });
const fromWire = (payload) => ({ data: text(payload.data), metadata: text(payload.metadata) });
/** 0.0.27 keeps an ERROR frame's code and message in `error.source`. */
function asError(error) {
  const source = (error && error.source) || {};
  return new RSocketError(
    source.code === undefined ? null : source.code,
    source.message === undefined ? String(error && error.message) : source.message
  );
}

function subscribe(single) {
  return new Promise((resolve, reject) => {
    single.subscribe({ onComplete: resolve, onError: reject, onSubscribe() {} });
  });
}

async function connect(url, { keepAlive = 20000, lifetime = 90000 } = {}) {
  const client = new RSocketClient({
    setup: {
      keepAlive,
      lifetime,
      dataMimeType: "application/octet-stream",
      metadataMimeType: "application/octet-stream",
    },
    transport: new RSocketWebSocketClient({ url }, BufferEncoders),
  });
  let socket;
  try {
    socket = await subscribe(client.connect());
  } catch (error) {
    throw new RSocketError(null, error ? String(error.message || error) : `cannot connect to ${url}`);
  }
  return new Client(client, socket);
}

class Client {
  constructor(client, socket) {
    this.client = client;
    this.socket = socket;
  }

  async requestResponse(payload) {
    try {
      const reply = await subscribe(this.socket.requestResponse(toWire(payload)));
      return reply === null || reply === undefined ? null : fromWire(reply);
    } catch (error) {
      throw asError(error);
    }
  }

  requestStream(payload, initialN, { onNext, onComplete = () => {}, onError = () => {} }) {
    let subscription = null;
    const pending = [];
    this.socket.requestStream(toWire(payload)).subscribe({
      onSubscribe(sub) {
        subscription = sub;
        sub.request(initialN);
        pending.splice(0).forEach((action) => action(sub));
      },
      onNext: (item) => onNext(fromWire(item)),
      onComplete,
      onError: (error) => onError(asError(error)),
    });
    const later = (action) => (subscription ? action(subscription) : pending.push(action));
    return { request: (n) => later((sub) => sub.request(n)), cancel: () => later((sub) => sub.cancel()) };
  }

  /** Sends `payloads` (the first with REQUEST_CHANNEL, the others within the responder's credit),
   * completes its half after the last, and resolves with every payload received. 0.0.27 never sets
   * C on the first frame: a one-element channel sends a separate COMPLETE. */
  requestChannel(payloads, inboundCredit) {
    const outbound = new Flowable((subscriber) => {
      const queue = payloads.map(toWire);
      let credit = 0;
      let done = false;
      subscriber.onSubscribe({
        request(n) {
          credit += n;
          while (!done && credit > 0 && queue.length > 0) {
            credit--;
            subscriber.onNext(queue.shift());
          }
          if (!done && queue.length === 0) {
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
      const received = [];
      this.socket.requestChannel(outbound).subscribe({
        onSubscribe: (sub) => sub.request(inboundCredit),
        onNext: (item) => received.push(fromWire(item)),
        onComplete: () => resolve(received),
        onError: (error) => reject(asError(error)),
      });
    });
  }

  fireAndForget(payload) {
    this.socket.fireAndForget(toWire(payload));
  }

  async metadataPush(metadata) {
    try {
      await subscribe(this.socket.metadataPush({ metadata: bytes(metadata) }));
    } catch (error) {
      throw asError(error);
    }
  }

  close() {
    this.client.close();
  }
}

install({ version: "0.0.27", connect });
