// Builds the package: ESM modules and type declarations with tsc (dist/*.js, *.d.ts),
// and two one-file browser bundles: dist/tally.min.js, whose debug notes are rule
// codes, and dist/tally.debug.js, the same recorder with the collector's sentences.
// esbuild bundles and minifies them, then terser minifies once more (it finds about 4%
// that esbuild's one pass leaves). It prints their sizes minified and gzipped;
// `budget.test.mjs` holds the small bundle to its budget.
import { execFileSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { minify } from "terser";

/** The small bundle's target (issue 12), minified + gzip (zlib level 9), in bytes;
 * `test/budget.test.mjs` holds it to its budget. */
const BUNDLE_TARGET = 3072;

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
  const built = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    minify: true,
    format: "esm",
    target: "es2020",
    platform: "browser",
    legalComments: "none",
    write: false,
  });
  const { code } = await minify(built.outputFiles[0].text, {
    module: true,
    ecma: 2020,
    // `unsafe_arrows` turns functions that use no `this` into arrows; the SDK never
    // calls its functions with `new`.
    compress: { passes: 3, unsafe_arrows: true },
    format: { comments: false },
  });
  const bundle = Buffer.from(code);
  writeFileSync(outfile, bundle);
  const gzipped = gzipSync(bundle, { level: 9 }).length;
  const target = outfile.endsWith(".min.js") ? ` (target ${BUNDLE_TARGET})` : "";
  console.log(
    `${outfile}: ${bundle.length} bytes minified, ${gzipped} bytes minified + gzip${target}`,
  );
}
