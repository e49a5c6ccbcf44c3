import { createHash } from 'node:crypto';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

/*
 * The browser app, bundled by esbuild when the gateway starts (a few hundred ms) and served from
 * memory: content-hashed names cached for a year, index.html never cached. Code splitting keeps
 * xterm.js out of the first load: the login and list pages paint before the terminal code (most
 * of the bytes) is fetched, and the player and live view import it when opened.
 */

export interface Asset {
  readonly bytes: Buffer;
  /** gzip of bytes, for clients that accept it (text assets only). */
  readonly gzip: Buffer | undefined;
  readonly type: string;
  readonly etag: string;
  /** Content-hashed: cache forever. */
  readonly immutable: boolean;
}

export interface AppAssets {
  /** By URL path (/web/assets/app-XXXX.js). */
  readonly files: ReadonlyMap<string, Asset>;
  readonly index: Asset;
  /** Bytes (raw, gzip) of what the first page load fetches: index.html, the entry script and CSS. */
  readonly firstLoad: { readonly raw: number; readonly gzip: number };
  /** Bytes of everything, including the lazily loaded terminal chunks. */
  readonly total: { readonly raw: number; readonly gzip: number };
}

export const ASSET_PREFIX = '/web/assets/';
const APP_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'app');

const TYPES: Readonly<Record<string, string>> = {
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
  html: 'text/html; charset=utf-8',
  svg: 'image/svg+xml',
  woff2: 'font/woff2',
};

function asset(bytes: Buffer, ext: string, immutable: boolean): Asset {
  const type = TYPES[ext] ?? 'application/octet-stream';
  const text = type.startsWith('text/') || ext === 'svg';
  return { bytes, gzip: text ? gzipSync(bytes, { level: 9 }) : undefined, type, etag: `"${createHash('sha256').update(bytes).digest('base64url').slice(0, 22)}"`, immutable };
}

function indexHtml(script: string, css: string | undefined, preload: readonly string[]): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>Portcullis</title>
${css === undefined ? '' : `<link rel="stylesheet" href="${css}">\n`}${preload.map((p) => `<link rel="modulepreload" href="${p}">\n`).join('')}<script type="module" src="${script}"></script>
</head>
<body>
<div id="app"><p class="boot">Loading…</p></div>
</body>
</html>
`;
}

/** Bundles app/src/main.ts (esbuild is a devDependency: imported only when the gateway builds). */
export async function buildAppAssets(opts: { readonly minify?: boolean } = {}): Promise<AppAssets> {
  const esbuild = await import('esbuild');
  const outdir = '/virtual/web/assets';
  const result = await esbuild.build({
    entryPoints: { app: join(APP_DIR, 'src', 'main.ts') },
    tsconfig: join(APP_DIR, 'tsconfig.json'),
    bundle: true,
    format: 'esm',
    splitting: true,
    minify: opts.minify ?? true,
    target: ['chrome111', 'firefox115', 'safari16'],
    outdir,
    entryNames: '[name]-[hash]',
    chunkNames: 'chunk-[hash]',
    assetNames: '[name]-[hash]',
    write: false,
    metafile: true,
    legalComments: 'none',
    logLevel: 'silent',
  });
  const files = new Map<string, Asset>();
  let script: string | undefined;
  let css: string | undefined;
  for (const f of result.outputFiles) {
    const name = relative(outdir, f.path);
    const ext = name.slice(name.lastIndexOf('.') + 1);
    const path = `${ASSET_PREFIX}${name}`;
    files.set(path, asset(Buffer.from(f.contents), ext, true));
    if (name.startsWith('app-') && ext === 'js') script = path;
    if (name.startsWith('app-') && ext === 'css') css = path;
  }
  if (script === undefined) throw new Error('web: esbuild made no app entry script');
  // The chunks the entry imports statically load with it (preloaded, not discovered one by one).
  const statics = new Set<string>();
  const walk = (out: string): void => {
    for (const i of result.metafile.outputs[out]?.imports ?? []) {
      if (i.kind !== 'import-statement' || statics.has(i.path)) continue;
      statics.add(i.path);
      walk(i.path);
    }
  };
  const metaPath = (urlPath: string): string => Object.keys(result.metafile.outputs).find((k) => k.endsWith(urlPath.slice(ASSET_PREFIX.length)))!;
  walk(metaPath(script));
  const preload = [...statics].map((p) => `${ASSET_PREFIX}${p.slice(p.lastIndexOf('/') + 1)}`);
  const index = asset(Buffer.from(indexHtml(script, css, preload)), 'html', false);
  const sum = (list: readonly Asset[]) => ({ raw: list.reduce((n, a) => n + a.bytes.length, 0), gzip: list.reduce((n, a) => n + (a.gzip ?? a.bytes).length, 0) });
  const first = [index, files.get(script)!, ...preload.map((p) => files.get(p)!), ...(css === undefined ? [] : [files.get(css)!])];
  return { files, index, firstLoad: sum(first), total: sum([index, ...files.values()]) };
}
