import type { ServerResponse } from 'node:http'
import type { FastifyBaseLogger, FastifyReply } from 'fastify'
import type { Sql } from '../../db/pool.js'
import { Unauthorized, within } from '../../platform/errors.js'

/** What the database says about a sheet (see the triggers in 005_attendance.sql). */
export interface SheetChange {
  sheet: string
  reason: 'registered' | 'removed' | 'status' | 'reconnected'
}

export interface SheetEvents {
  /**
   * Answers the request with an event stream of the sheet's changes, until the client leaves, falls
   * behind, `ended` aborts (its session ended) or the app closes.
   */
  stream(publicId: string, reply: FastifyReply, ended: AbortSignal): Promise<void>
  /** Open streams, for the metrics. */
  count(): number
  /** Ends every stream (so a graceful shutdown is not held open by them) and stops listening. */
  close(): Promise<void>
}

const channel = 'attendance'
const listenTimeoutMs = 3000

export interface SheetEventsOptions {
  /** Unsent output a stream may hold; past it the client is not keeping up and the stream is closed. */
  bufferBytes: number
  keepAliveMs?: number
}

/**
 * Server-sent events for the sheets' pages. Every replica hears every change through one LISTEN on
 * PostgreSQL and writes it to the streams of that sheet it holds. postgres.js keeps the LISTEN on a
 * connection of its own and, should it drop, reconnects with backoff (also after a long outage:
 * tried at 40 s) and listens again.
 */
export function sheetEvents(
  sql: Sql,
  log: FastifyBaseLogger,
  { bufferBytes, keepAliveMs = 15_000 }: SheetEventsOptions
): SheetEvents {
  const streams = new Map<string, Set<ServerResponse>>()
  let listened: Promise<void> | undefined
  let heard: () => void
  let listenedBefore = false
  let unlisten: (() => Promise<void>) | undefined

  /** Resolves once PostgreSQL has first said it listens. */
  function listen() {
    if (listened) return listened
    listened = new Promise((resolve) => {
      heard = resolve
    })
    // Once per process, even if this first attempt fails: postgres.js keeps the registration and
    // retries by itself, and a second registration would deliver every change twice.
    sql.listen(channel, deliver, onListen).then(
      (listener) => {
        unlisten = listener.unlisten
      },
      (error: Error) => log.warn({ err: error.message }, 'not listening for attendance changes yet; retrying')
    )
    return listened
  }

  function listening() {
    return within(listen(), listenTimeoutMs, 'attendance changes cannot be heard now, retry shortly')
  }

  function count() {
    return [...streams.values()].reduce((sum, set) => sum + set.size, 0)
  }

  // Notifications sent while the connection was down are lost: every page is told to read afresh.
  function onListen() {
    heard()
    if (listenedBefore) {
      log.info('listening for attendance changes again')
      for (const sheet of streams.keys()) deliver(JSON.stringify({ sheet, reason: 'reconnected' }))
    }
    listenedBefore = true
  }

  function deliver(payload: string) {
    let change: SheetChange
    try {
      change = JSON.parse(payload)
    } catch {
      log.warn({ payload }, 'unreadable attendance notification')
      return
    }
    const event = `event: change\ndata: ${JSON.stringify({ sheet: change.sheet, reason: change.reason })}\n\n`
    for (const res of streams.get(change.sheet) ?? []) send(res, event)
  }

  // A client that does not keep up is dropped rather than buffered for: its page reconnects and reads
  // the list afresh, which is all a change event ever asks of it.
  function send(res: ServerResponse, text: string) {
    if (res.writableLength + Buffer.byteLength(text) > bufferBytes) res.destroy()
    else res.write(text)
  }

  return {
    async stream(publicId, reply, ended) {
      // Listening first: if PostgreSQL cannot be heard the client gets an error, not a silent stream.
      await listening()
      if (ended.aborted) throw new Unauthorized('session expired or invalid')
      reply.hijack()
      const res = reply.raw
      // Its client left while this waited: 'close' is past and would never undo what follows.
      if (res.closed) return
      res.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        'x-accel-buffering': 'no', // nginx: pass each event on at once
        'x-content-type-options': 'nosniff' // the security hook does not see a hijacked answer
      })
      res.write(': connected\n\n')
      const sheetStreams = streams.get(publicId) ?? new Set()
      streams.set(publicId, sheetStreams.add(res))
      // A comment now and then keeps proxies and the browser from timing the idle stream out.
      const keepAlive = setInterval(() => send(res, ': keep-alive\n\n'), keepAliveMs)
      // Its session is over: nothing more may reach this client, and its page's reconnection meets a 401.
      const end = () => res.destroy()
      ended.addEventListener('abort', end, { once: true })
      res.once('close', () => {
        ended.removeEventListener('abort', end)
        clearInterval(keepAlive)
        sheetStreams.delete(res)
        if (sheetStreams.size === 0 && streams.get(publicId) === sheetStreams) streams.delete(publicId)
      })
    },

    count,

    async close() {
      for (const res of [...streams.values()].flatMap((set) => [...set])) {
        // The socket goes too: a kept-alive connection would hold the server's close open.
        res.end(() => res.destroy())
      }
      await unlisten?.().catch(() => undefined)
    }
  }
}
