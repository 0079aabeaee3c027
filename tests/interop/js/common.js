"use strict";
/*
 * Helpers shared by the rsocket-js peer scripts (v0/ and v1/); no RSocket code in here.
 *
 * Peer servers print exactly one line `PORT <n>` to stdout once listening and exit 0 when their
 * stdin reaches EOF (the test closes the pipe, or dies). Peer clients print one JSON line per
 * result to stdout and exit 0 when every step ran; errors and logs go to stderr.
 */

/** Parse `--name value` pairs and bare `--flag`s into an object (`--port 1` -> {port: "1"}). */
function parseArgs(argv, defaults) {
  const args = Object.assign({}, defaults);
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index];
    if (!arg.startsWith("--")) {
      throw new Error(`unexpected argument ${JSON.stringify(arg)}`);
    }
    const name = arg.slice(2);
    const next = argv[index + 1];
    if (next === undefined || next.startsWith("--")) {
      args[name] = true;
    } else {
      args[name] = next;
      index++;
    }
  }
  return args;
}

/** Announce the listening port (the test waits for this line) and serve until stdin closes. */
function announcePort(port, onStdinEnd) {
  process.stdout.write(`PORT ${port}\n`);
  process.stdin.on("end", () => {
    onStdinEnd();
    process.exit(0);
  });
  process.stdin.on("error", () => process.exit(0));
  process.stdin.resume();
}

/** Print one result line for the test: {"step": step, ...fields}. */
function report(step, fields) {
  process.stdout.write(JSON.stringify(Object.assign({ step }, fields)) + "\n");
}

/** Bytes (Buffer, null or undefined) as a latin-1 string (lossless), or null when absent. */
function text(buffer) {
  return buffer === null || buffer === undefined ? null : Buffer.from(buffer).toString("latin1");
}

/** A latin-1 string as a Buffer. */
function bytes(value) {
  return Buffer.from(value, "latin1");
}

/** The items a stream request asks for: data "N" -> item-0 .. item-(N-1); null when not a count. */
function streamCount(data) {
  const value = text(data);
  return value !== null && /^[0-9]+$/.test(value) ? Number(value) : null;
}

/** Fail the whole client run (stderr + exit 1) when a step takes longer than `seconds`. */
function deadline(seconds) {
  const timer = setTimeout(() => {
    process.stderr.write(`client timed out after ${seconds} s\n`);
    process.exit(1);
  }, seconds * 1000);
  timer.unref();
}

module.exports = { parseArgs, announcePort, report, text, bytes, streamCount, deadline };
