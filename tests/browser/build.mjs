// Bundle rsocket-js for the browser: `npm run build` (from this folder) or
// `npm run build --prefix tests/browser` (from the repository root).
//
//   dist/rsocket-v1.js  rsocket-js 1.0.0-alpha.3 (rsocket-core, rsocket-websocket-client)
//   dist/rsocket-v0.js  rsocket-js 0.0.27 (installed under the aliases rsocket-core-v0 and
//                       rsocket-websocket-client-v0, since both majors share package names)
//
// Each is one classic script (IIFE) defining `window.AnyioRSocketBrowser` (see src/api.js): the
// same small promise-based client API over either version, plus the scenario the browser test runs.
// 1.0.0-alpha.3 uses Node's global `Buffer`, which browsers lack: the `buffer` package is injected
// for it. 0.0.27 brings its own browser buffer (LiteBuffer) and needs nothing.
import { build } from "esbuild";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));

const common = {
  bundle: true,
  format: "iife",
  platform: "browser",
  target: "es2020",
  sourcemap: "linked",
  logLevel: "warning",
  define: { "process.env.NODE_ENV": '"production"' },
};

await Promise.all([
  build({
    ...common,
    entryPoints: [join(here, "src", "v1.js")],
    outfile: join(here, "dist", "rsocket-v1.js"),
    inject: [join(here, "src", "buffer-shim.js")],
  }),
  build({
    ...common,
    entryPoints: [join(here, "src", "v0.js")],
    outfile: join(here, "dist", "rsocket-v0.js"),
    // rsocket-websocket-client-v0 requires "rsocket-core": give it the 0.0.27 copy we import too
    // (npm nests a second copy under it, which would otherwise be bundled as well).
    alias: { "rsocket-core": "rsocket-core-v0" },
  }),
]);
