// Injected by esbuild into the 1.0.0-alpha.3 bundle: every free `Buffer` becomes this import.
export { Buffer } from "buffer";
