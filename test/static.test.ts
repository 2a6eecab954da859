import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { brotliCompressSync, gzipSync } from 'node:zlib'
import Fastify, { type FastifyInstance } from 'fastify'
import { errorsPlugin } from '../src/platform/errors.js'
import { htmlSecurityHeaders, staticPlugin } from '../src/platform/static.js'
import { request } from './helpers/http.js'

const page = '<!doctype html><title>Create</title><h1>Create attendance sheet</h1>'
const script = `console.log(${JSON.stringify('x'.repeat(2000))})`

async function serve(root: string): Promise<{ app: FastifyInstance; url: string; warnings: string[] }> {
  const warnings: string[] = []
  const app = Fastify({
    logger: {
      level: 'warn',
      stream: {
        write: (line: string) => {
          warnings.push(JSON.parse(line).msg)
        }
      }
    }
  })
  await app.register(errorsPlugin, { exposeErrors: false })
  await app.register(staticPlugin, { root })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  return { app, url: `http://127.0.0.1:${port}`, warnings }
}

// A dist/web as `npm run build:web` leaves it: pages, hashed assets, and compressed twins.
async function fakeBuild(root: string) {
  await mkdir(path.join(root, 'assets'), { recursive: true })
  await writeFile(path.join(root, 'index.html'), page)
  await writeFile(path.join(root, 'index.html.br'), brotliCompressSync(page))
  await writeFile(path.join(root, 'index.html.gz'), gzipSync(page))
  await writeFile(path.join(root, 'favicon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>')
  await writeFile(path.join(root, 'assets/index-C0ffee42.js'), script)
  await writeFile(path.join(root, 'assets/index-C0ffee42.js.br'), brotliCompressSync(script))
}

describe('the web UI files', () => {
  let root: string
  let server: Awaited<ReturnType<typeof serve>>

  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'tandem-web-'))
    await fakeBuild(root)
    server = await serve(root)
  })

  after(async () => {
    await server?.app.close()
    await rm(root, { recursive: true, force: true })
  })

  test('/ is index.html, revalidated on every visit and locked down by the CSP', async () => {
    const res = await request(server.url, 'GET', '/', { headers: { 'accept-encoding': 'identity' } })

    assert.equal(res.status, 200)
    assert.equal(res.text, page)
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/)
    assert.equal(res.headers.get('cache-control'), 'no-cache')
    for (const [header, value] of Object.entries(htmlSecurityHeaders)) assert.equal(res.headers.get(header), value)
    assert.match(htmlSecurityHeaders['content-security-policy'], /script-src 'self';/)
  })

  test('a client accepting brotli or gzip gets the file compressed at build time', async () => {
    for (const encoding of ['br', 'gzip']) {
      const res = await request(server.url, 'GET', '/index.html', { headers: { 'accept-encoding': encoding } })

      assert.equal(res.status, 200)
      assert.equal(res.headers.get('content-encoding'), encoding)
      assert.equal(res.text, page, 'fetch decodes it back to the page')
      assert.match(res.headers.get('content-type') ?? '', /^text\/html/)
      assert.equal(res.headers.get('vary'), 'accept-encoding')
      assert.equal(res.headers.get('cache-control'), 'no-cache')
      assert.ok(res.headers.get('content-security-policy'))
    }
  })

  test('hashed assets are cached for a year as immutable', async () => {
    const res = await request(server.url, 'GET', '/assets/index-C0ffee42.js', { headers: { 'accept-encoding': 'br' } })

    assert.equal(res.status, 200)
    assert.equal(res.text, script)
    assert.equal(res.headers.get('content-encoding'), 'br')
    assert.match(res.headers.get('content-type') ?? '', /javascript/)
    assert.equal(res.headers.get('cache-control'), 'public, max-age=31536000, immutable')
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff')
  })

  test('files outside assets/ are revalidated, and a second look is a 304', async () => {
    const first = await request(server.url, 'GET', '/favicon.svg')
    // fetch adds `cache-control: no-cache` to a conditional request unless told otherwise, as a browser would not.
    const again = await request(server.url, 'GET', '/favicon.svg', {
      headers: { 'if-none-match': first.headers.get('etag')!, 'cache-control': 'max-age=0' }
    })

    assert.equal(first.headers.get('cache-control'), 'no-cache')
    assert.equal(again.status, 304)
  })

  test('unknown paths and the compressed twins themselves keep the JSON 404', async () => {
    for (const url of ['/nope.html', '/index.html.br', '/assets/', '/assets/missing.js']) {
      const res = await request(server.url, 'GET', url)

      assert.equal(res.status, 404, url)
      assert.equal(res.body.error, 'not-found', url)
    }
  })
})

describe('without a built UI', () => {
  test('the plugin serves nothing and warns once', async () => {
    const server = await serve(path.join(tmpdir(), 'tandem-web-never-built'))
    try {
      const res = await request(server.url, 'GET', '/')

      assert.equal(res.status, 404)
      assert.deepEqual(server.warnings, ['web UI not built (npm run build:web): not serving it'])
    } finally {
      await server.app.close()
    }
  })
})
