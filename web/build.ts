/**
 * Builds the web UI into dist/web: each page's script and the stylesheet bundled by esbuild under
 * content-hashed names in /assets/ (cached for a year), the HTML pages with their shared partials
 * expanded and their references rewritten to those names (served no-cache), and a .br and a .gz
 * beside every text file for @fastify/static's `preCompressed`.
 */
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { brotliCompressSync, constants, gzipSync } from 'node:zlib'
import { build } from 'esbuild'

const webRoot = path.dirname(fileURLToPath(import.meta.url))
const outDir = path.join(webRoot, '../dist/web')
const pages = readdirSync(webRoot).filter((file) => file.endsWith('.html'))
const sourceRef = /(?:src|href)="\/(src\/[\w-]+\.(?:ts|css))"/g

// The teacher pages share their head, top bar and sidebar: `<!-- include: topbar -->` pulls in web/partials/topbar.html.
const expand = (html: string) =>
  html.replace(/<!-- include: ([\w-]+) -->/g, (_, name: string) =>
    readFileSync(path.join(webRoot, 'partials', `${name}.html`), 'utf8')
  )

const html = Object.fromEntries(pages.map((page) => [page, expand(readFileSync(path.join(webRoot, page), 'utf8'))]))
const entries = [
  ...new Set(Object.values(html).flatMap((text) => [...text.matchAll(sourceRef)].map((match) => match[1])))
]

rmSync(outDir, { recursive: true, force: true })
const result = await build({
  absWorkingDir: webRoot,
  entryPoints: entries,
  outdir: path.join(outDir, 'assets'),
  outbase: 'src',
  entryNames: '[name]-[hash]',
  chunkNames: 'chunk-[hash]',
  assetNames: '[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  target: 'es2022',
  minify: true,
  sourcemap: 'linked',
  metafile: true,
  logLevel: 'warning'
})

// Source entry (src/login.ts) → built file (/assets/login-HASH.js).
const built = new Map<string, string>()
for (const [output, meta] of Object.entries(result.metafile.outputs)) {
  if (meta.entryPoint) built.set(meta.entryPoint, `/${path.relative(outDir, path.resolve(webRoot, output))}`)
}

for (const [page, text] of Object.entries(html)) {
  const rewritten = text.replace(sourceRef, (match, source: string) => {
    const target = built.get(source)
    if (!target) throw new Error(`${page}: nothing was built for ${source}`)
    return match.replace(`/${source}`, target)
  })
  writeFileSync(path.join(outDir, page), rewritten)
}
if (existsSync(path.join(webRoot, 'public'))) cpSync(path.join(webRoot, 'public'), outDir, { recursive: true })

const compressible = /\.(html|js|css|svg|json|txt|map)$/
for (const file of readdirSync(outDir, { recursive: true, encoding: 'utf8' })) {
  const full = path.join(outDir, file)
  if (!compressible.test(file) || statSync(full).size < 1024) continue
  const content = readFileSync(full)
  writeFileSync(`${full}.br`, brotliCompressSync(content, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }))
  writeFileSync(`${full}.gz`, gzipSync(content, { level: 9 }))
}
