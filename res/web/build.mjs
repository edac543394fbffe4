// Builds the page into dist/: index.html, assets/app.js (with @stomp/stompjs
// bundled in) and assets/app.css. order-api embeds dist/ at compile time.
import { build } from 'esbuild';
import { copyFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');

await mkdir(join(dist, 'assets'), { recursive: true });
await build({
  absWorkingDir: here,
  entryPoints: { app: 'src/app.js' },
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
  entryPoints: { app: 'src/app.css' },
  outdir: join(dist, 'assets'),
  bundle: true,
  minify: true,
  logLevel: 'warning',
});
await copyFile(join(here, 'index.html'), join(dist, 'index.html'));
