// Builds the pages into dist/: index.html, assets/app.js (with @stomp/stompjs
// bundled in) and assets/app.css for the customer; scan.html, assets/scan.js
// (with the QR decoder from @zxing/library and jose bundled in) and
// assets/scan.css for the pickup counter. order-api embeds dist/ at compile time.
import { build } from 'esbuild';
import { copyFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');

await mkdir(join(dist, 'assets'), { recursive: true });
await build({
  absWorkingDir: here,
  entryPoints: { app: 'src/app.js', scan: 'src/scan/main.js' },
  outdir: join(dist, 'assets'),
  bundle: true,
  format: 'esm',
  target: ['es2020'],
  minify: true,
  sourcemap: false,
  legalComments: 'eof',
  logLevel: 'warning',
});
await build({
  absWorkingDir: here,
  entryPoints: { app: 'src/app.css', scan: 'src/scan/scan.css' },
  outdir: join(dist, 'assets'),
  bundle: true,
  minify: true,
  logLevel: 'warning',
});
for (const page of ['index.html', 'scan.html']) await copyFile(join(here, page), join(dist, page));
