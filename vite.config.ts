import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { brotliCompressSync, constants, gzipSync } from 'node:zlib'
import { defineConfig, type Plugin } from 'vite'

const webRoot = path.join(path.dirname(fileURLToPath(import.meta.url)), 'web')
const outDir = path.join(webRoot, '../dist/web')
const pages = readdirSync(webRoot).filter((file) => file.endsWith('.html'))

// The teacher pages share their top bar and sidebar: `<!-- include: shell-top -->` pulls in web/partials/shell-top.html.
function partials(): Plugin {
  return {
    name: 'tandem-partials',
    transformIndexHtml: {
      order: 'pre',
      handler: (html) => html.replace(/<!-- include: ([\w-]+) -->/g, (_, name: string) =>
        readFileSync(path.join(webRoot, 'partials', `${name}.html`), 'utf8'))
    }
  }
}

const compressible = /\.(html|js|css|svg|json|txt|map)$/

// What @fastify/static's `preCompressed` serves: a .br and a .gz beside every text file worth compressing.
function precompress(): Plugin {
  return {
    name: 'tandem-precompress',
    apply: 'build',
    closeBundle () {
      for (const file of readdirSync(outDir, { recursive: true, encoding: 'utf8' })) {
        const full = path.join(outDir, file)
        if (!compressible.test(file) || statSync(full).size < 1024) continue
        const content = readFileSync(full)
        writeFileSync(`${full}.br`, brotliCompressSync(content, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }))
        writeFileSync(`${full}.gz`, gzipSync(content, { level: 9 }))
      }
    }
  }
}

export default defineConfig({
  root: webRoot,
  appType: 'mpa',
  plugins: [partials(), precompress()],
  build: {
    outDir,
    emptyOutDir: true,
    // The CSP allows no data: fonts or scripts: every asset stays a file.
    assetsInlineLimit: 0,
    cssCodeSplit: false,
    target: 'es2022',
    rollupOptions: { input: Object.fromEntries(pages.map((page) => [page.replace(/\.html$/, ''), path.join(webRoot, page)])) }
  },
  server: {
    proxy: { '/api': 'http://127.0.0.1:9999' }
  }
})
