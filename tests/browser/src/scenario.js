// The browser test's script (tests/test_browser.py), run by the page against the test's server,
// whose handler answers: request-response "error" -> APPLICATION_ERROR "boom", any other -> "echo:"
// + data with the metadata echoed; streams "N" -> item-0 .. item-(N-1), "error" -> item-0 then
// APPLICATION_ERROR "stream-boom"; channels echo each element as "echo:" + data; fire-and-forget
// and METADATA_PUSH are recorded (the test checks them on its side).
//
// Resolves with one object per step, {step, ...}; any unexpected failure rejects.

/** A stream with manual credit: `batch` first, then `batch` more each time the batch arrived and a
 * request-response round trip after it ("barrier") showed that nothing beyond the credit came. */
function streamWithCredit(client, payload, batch) {
  return new Promise((resolve, reject) => {
    const items = [];
    const credits = [batch];
    const receivedBeforeRequest = [];
    let granted = batch;
    let overflow = false;
    let finished = false;
    let subscription = null;
    const finish = (error) => {
      if (!finished) {
        finished = true;
        resolve({ items, credits, receivedBeforeRequest, overflow, error });
      }
    };
    const more = async () => {
      try {
        // Sent after the whole batch arrived: were the server ignoring credit, its next item would
        // be on the wire before this answer (it is not proof, but it catches the lapse reliably).
        await client.requestResponse({ data: "barrier" });
        if (finished) {
          return;
        }
        receivedBeforeRequest.push(items.length);
        overflow = overflow || items.length > granted;
        credits.push(batch);
        granted += batch;
        subscription.request(batch);
      } catch (error) {
        reject(error);
      }
    };
    subscription = client.requestStream(payload, batch, {
      onNext(item) {
        items.push(item.data);
        overflow = overflow || items.length > granted;
        if (items.length === granted) {
          more();
        }
      },
      onComplete: () => finish(null),
      onError: (error) => finish({ code: error.code, message: error.message }),
    });
  });
}

export async function runScenario(adapter, url) {
  const steps = [];
  const client = await adapter.connect(url);
  try {
    const reply = await client.requestResponse({ data: "hello", metadata: "meta" });
    steps.push({ step: "rr", data: reply.data, metadata: reply.metadata });

    try {
      await client.requestResponse({ data: "error" });
      steps.push({ step: "rr-error", error: null });
    } catch (error) {
      steps.push({ step: "rr-error", error: { code: error.code, message: error.message } });
    }

    client.fireAndForget({ data: "fnf-1", metadata: "fnf-meta" });
    steps.push({ step: "fnf" });

    await client.metadataPush("pushed");
    steps.push({ step: "metadata-push" });

    steps.push({ step: "stream", ...(await streamWithCredit(client, { data: "10" }, 3)) });
    const failing = await streamWithCredit(client, { data: "error" }, 5);
    steps.push({ step: "stream-error", items: failing.items, error: failing.error });

    const echoes = await client.requestChannel([{ data: "a" }, { data: "b" }, { data: "c" }], 10);
    steps.push({ step: "channel", items: echoes.map((item) => item.data) });
  } finally {
    client.close();
  }
  return steps;
}
