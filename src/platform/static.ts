import { existsSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import fastifyStatic, { type SetHeadersResponse } from '@fastify/static'
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { contentSecurityPolicyHeader } from './security.js'

// src/platform/ and dist/platform/ are both two levels below the project root; the UI is built to dist/web.
const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const defaultWebRoot = path.join(projectRoot, 'dist/web')

/** What every HTML page gets: scripts and styles from this origin only, never framed, no MIME sniffing. */
export const htmlSecurityHeaders: Record<string, string> = {
  'content-security-policy': contentSecurityPolicyHeader,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin'
}

const headersFor =
  (root: string) =>
  (res: SetHeadersResponse, file: string): void => {
    const name = path.relative(root, file).replace(/\.(br|gz)$/, '')
    res.setHeader('vary', 'accept-encoding')
    if (name.endsWith('.html')) {
      for (const [header, value] of Object.entries(htmlSecurityHeaders)) res.setHeader(header, value)
    } else {
      res.setHeader('x-content-type-options', 'nosniff')
    }
    // Hashed names change with their content, so they may be kept forever; anything else is revalidated.
    const hashed = name.startsWith(`assets${path.sep}`)
    res.setHeader('cache-control', hashed ? 'public, max-age=31536000, immutable' : 'no-cache')
  }

/**
 * The web UI (web/, built by `npm run build:web` to dist/web): one route per built file, `/` serving
 * index.html, and the .br/.gz twins made at build time sent to clients that accept them. Without a
 * build it serves nothing and says so.
 */
export const staticPlugin = fp(
  async (app: FastifyInstance, { root = defaultWebRoot }: { root?: string } = {}) => {
    if (!existsSync(path.join(root, 'index.html'))) {
      app.log.warn({ root }, 'web UI not built (npm run build:web): not serving it')
      return
    }
    await app.register(fastifyStatic, {
      root,
      // Routes for the files that exist at start-up: any other path keeps the API's JSON 404.
      wildcard: false,
      globIgnore: ['**/*.br', '**/*.gz'],
      index: ['index.html'],
      preCompressed: true,
      cacheControl: false,
      decorateReply: false,
      setHeaders: headersFor(root)
    })
  },
  { name: 'static' }
)
