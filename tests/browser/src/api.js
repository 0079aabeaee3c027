// What both bundles put on `window.AnyioRSocketBrowser`: one small client API over either
// rsocket-js version (the adapters in v1.js and v0.js), and the browser test's scenario.
//
//   const client = await AnyioRSocketBrowser.connect("ws://127.0.0.1:8080/rsocket");
//   const reply = await client.requestResponse({ data: "hi", metadata: "m" });  // {data, metadata}
//   const sub = client.requestStream({ data: "x" }, 4, { onNext, onComplete, onError });
//   sub.request(4); sub.cancel();
//   const echoes = await client.requestChannel([{ data: "a" }, { data: "b" }], 8);  // [{data, metadata}]
//   client.fireAndForget({ data: "fnf" });
//   await client.metadataPush("push");
//   client.close();
//
// Payload data and metadata are strings (UTF-8 on the wire); metadata is null when absent.
// Failures are `RSocketError`s: `.code` is the ERROR frame's code (0x201 APPLICATION_ERROR, ...)
// or null when the failure was not an ERROR frame, `.message` its message.
import { runScenario } from "./scenario.js";

export class RSocketError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "RSocketError";
    this.code = code;
  }
}

/** Publish an adapter ({version, connect}) as window.AnyioRSocketBrowser. */
export function install(adapter) {
  const api = {
    version: adapter.version,
    connect: adapter.connect,
    RSocketError,
    runScenario: (url) => runScenario(adapter, url),
  };
  globalThis.AnyioRSocketBrowser = api;
  return api;
}
