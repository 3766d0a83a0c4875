// Builds the package: ESM modules and type declarations with tsc (dist/*.js, *.d.ts),
// and the one-file browser bundle with esbuild (dist/tally.min.js), whose minified and
// gzipped size it prints.
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));
process.chdir(root);
rmSync("dist", { recursive: true, force: true });
execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "."], {
  stdio: "inherit",
});
await esbuild.build({
  entryPoints: ["src/browser.ts"],
  outfile: "dist/tally.min.js",
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2020",
  platform: "browser",
  legalComments: "none",
});
const bundle = readFileSync("dist/tally.min.js");
const gzipped = gzipSync(bundle, { level: 9 }).length;
console.log(
  `dist/tally.min.js: ${bundle.length} bytes minified, ${gzipped} bytes minified + gzip (target <= 3072)`,
);
