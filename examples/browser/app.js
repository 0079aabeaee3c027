// The example page's logic (a plain script: no build step of its own). It loads one of the bundles
// built in tests/browser (`npm run build --prefix tests/browser`), which define
// window.AnyioRSocketBrowser: connect(url) and a promise-based client (tests/browser/src/api.js).
"use strict";

const params = new URLSearchParams(location.search);
const version = params.get("rsocket") === "v0" ? "v0" : "v1";
const $ = (id) => document.getElementById(id);
$("url").value = params.get("url") || "ws://127.0.0.1:8080/rsocket";
let client = null;
let stream = null;
const lines = [];

function log(text, isError = false) {
  lines.push(text);
  const line = document.createElement("div");
  line.textContent = text;
  if (isError) {
    line.className = "error";
  }
  $("log").appendChild(line);
}

const show = (payload) =>
  payload === null ? "(empty)" : payload.metadata === null ? payload.data : `${payload.data} [metadata: ${payload.metadata}]`;
const failure = (error) => `${error.code === null || error.code === undefined ? "" : `0x${error.code.toString(16)} `}${error.message}`;
const payload = () => ({ data: $("data").value, metadata: $("metadata").value || null });

/** Resolves once the bundle is loaded (it is picked by ?rsocket=). */
window.exampleReady = new Promise((resolve, reject) => {
  const script = document.createElement("script");
  script.src = `../../tests/browser/dist/rsocket-${version}.js`;
  script.onload = () => {
    $("version").textContent = `rsocket-js ${window.AnyioRSocketBrowser.version}`;
    resolve(window.AnyioRSocketBrowser);
  };
  script.onerror = () => {
    const message = `cannot load ${script.src}: run npm ci --prefix tests/browser && npm run build --prefix tests/browser`;
    log(message, true);
    reject(new Error(message));
  };
  document.head.appendChild(script);
});

function connected(isConnected) {
  $("connect").disabled = isConnected;
  $("disconnect").disabled = !isConnected;
  $("interactions").disabled = !isConnected;
}

async function connect() {
  const api = await window.exampleReady;
  const url = $("url").value;
  log(`connecting to ${url} with rsocket-js ${api.version}`);
  client = await api.connect(url);
  connected(true);
  log("connected");
}

function disconnect() {
  if (client) {
    client.close();
    client = null;
  }
  connected(false);
  log("disconnected");
}

async function requestResponse() {
  const reply = await client.requestResponse(payload());
  log(`request-response: ${show(reply)}`);
}

function fireAndForget() {
  client.fireAndForget(payload());
  log("fire-and-forget sent (the server prints it)");
}

async function metadataPush() {
  await client.metadataPush($("metadata").value || "pushed from the browser");
  log("metadata push sent (the server prints it)");
}

/** A stream with manual credit: the page asks for n items, and for n more when you say so. */
function requestStream() {
  const credit = Number($("credit").value) || 1;
  return new Promise((resolve) => {
    let received = 0;
    const done = (text, isError = false) => {
      log(text, isError);
      stream = null;
      $("request-more").disabled = $("cancel-stream").disabled = true;
      resolve(received);
    };
    stream = client.requestStream(payload(), credit, {
      onNext: (item) => log(`stream item ${++received}: ${show(item)}`),
      onComplete: () => done(`stream complete after ${received} item(s)`),
      onError: (error) => done(`stream failed: ${failure(error)}`, true),
    });
    $("request-more").disabled = $("cancel-stream").disabled = false;
    log(`stream requested with credit ${credit}`);
  });
}

async function requestChannel() {
  const elements = $("elements").value.split(",").map((text) => ({ data: text.trim(), metadata: null }));
  const echoes = await client.requestChannel(elements, 16);
  log(`channel: ${echoes.map(show).join(" | ")}`);
}

/** One of each interaction; resolves with {ok, lines} (the repository's tests call it too). */
async function runAll() {
  try {
    if (!client) {
      await connect();
    }
    await requestResponse();
    fireAndForget();
    await metadataPush();
    await requestStream();
    await requestChannel();
    disconnect();
    return { ok: true, lines };
  } catch (error) {
    log(`failed: ${failure(error)}`, true);
    return { ok: false, error: failure(error), lines };
  }
}
window.runAll = runAll;

function button(id, action) {
  $(id).addEventListener("click", () => {
    Promise.resolve()
      .then(action)
      .catch((error) => log(`${id} failed: ${failure(error)}`, true));
  });
}

button("connect", connect);
button("disconnect", disconnect);
button("request-response", requestResponse);
button("fire-and-forget", fireAndForget);
button("metadata-push", metadataPush);
button("request-stream", requestStream);
button("request-more", () => stream && stream.request(Number($("credit").value) || 1));
button("cancel-stream", () => {
  if (stream) {
    stream.cancel();
    log("stream cancelled");
    stream = null;
    $("request-more").disabled = $("cancel-stream").disabled = true;
  }
});
button("request-channel", requestChannel);
button("run-all", runAll);
$("switch").textContent = `use rsocket-js ${version === "v1" ? "0.0.27" : "1.0.0-alpha.3"}`;
$("switch").addEventListener("click", (event) => {
  event.preventDefault();
  const next = new URLSearchParams({ url: $("url").value, rsocket: version === "v1" ? "v0" : "v1" });
  location.search = next.toString();
});
