// Builds the package: ESM modules and type declarations with tsc (dist/*.js, *.d.ts),
// and two one-file browser bundles with esbuild: dist/tally.min.js, whose debug notes
// are rule codes, and dist/tally.debug.js, the same recorder with the collector's
// sentences. It prints their sizes minified and gzipped; `budget.test.mjs` holds the
// small bundle to its budget.
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

/** The small bundle's budget, minified + gzip (zlib level 9), in bytes. */
const BUNDLE_BUDGET = 3072;

const root = fileURLToPath(new URL("..", import.meta.url));
process.chdir(root);
rmSync("dist", { recursive: true, force: true });
execFileSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "."], {
  stdio: "inherit",
});
const bundles = [
  ["src/browser.ts", "dist/tally.min.js"],
  ["src/browser-debug.ts", "dist/tally.debug.js"],
];
for (const [entry, outfile] of bundles) {
  await esbuild.build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    minify: true,
    format: "esm",
    target: "es2020",
    platform: "browser",
    legalComments: "none",
    // Members named `_like_this` are internal to the recorder (its classes' state and
    // methods): they get one- or two-letter names. Nothing outside the bundle sees them.
    mangleProps: /^_/,
  });
  const bundle = readFileSync(outfile);
  const gzipped = gzipSync(bundle, { level: 9 }).length;
  const budget = outfile.endsWith(".min.js") ? ` (budget ${BUNDLE_BUDGET})` : "";
  console.log(
    `${outfile}: ${bundle.length} bytes minified, ${gzipped} bytes minified + gzip${budget}`,
  );
}
