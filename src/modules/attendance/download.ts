import type { ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import type { FastifyBaseLogger } from 'fastify'
import type { Sql } from '../../db/pool.js'
import { csvRecord } from './csv.js'
import { studentsPage, type PageEnd, type Student } from './queries.js'

/** Rows read per statement: about 45 KB of CSV. */
export const csvPageSize = 1000

const header = csvRecord(['Timestamp', 'Student number', 'Name'])
const records = (rows: Student[]) =>
  rows.map((row) => csvRecord([row.timestamp.toISOString(), row.nmec, row.name])).join('')

export interface DownloadOptions {
  sql: Sql
  sheetId: number
  /** The first page, read before the answer starts so that a database failure is still a clean 503. */
  first: Array<Student & PageEnd>
  res: ServerResponse
  /** How long the client may take nothing before the download is cut. */
  sendTimeoutMs: number
  log: FastifyBaseLogger
}

/**
 * The CSV of a sheet's students, for reply.send. Fastify pipes it into the response, and the pipe asks
 * for the next page only once the response has drained: at most a page waits here and one in the
 * response, and no database connection is held while the client is slow. A client that takes nothing
 * for `sendTimeoutMs` (to be exact: does not make room for the next page in that time) has its socket
 * destroyed, which ends this stream and frees the download's slot. Time spent reading a page from the
 * database is not the client's and does not count.
 */
export function studentsCsv({ sql, sheetId, first, res, sendTimeoutMs, log }: DownloadOptions): Readable {
  const deadline = clientDeadline(res, sendTimeoutMs, log)
  async function* chunks() {
    let rows = first
    let text = header + records(rows)
    for (;;) {
      deadline.start()
      yield text
      deadline.stop()
      if (rows.length < csvPageSize) break
      const { registeredAt, nmec } = rows[rows.length - 1]
      rows = await studentsPage(sql, sheetId, { registeredAt, nmec }, csvPageSize)
      if (rows.length === 0) break
      text = records(rows)
    }
    // The last bytes are still in the response and the socket: the client has to take them too.
    deadline.start()
  }
  return Readable.from(chunks(), { objectMode: false })
}

/** Destroys `res` once it has waited `timeoutMs` for its client, from start() until stop() or the response is flushed. */
function clientDeadline(res: ServerResponse, timeoutMs: number, log: FastifyBaseLogger) {
  let timer: NodeJS.Timeout | undefined
  const stop = () => clearTimeout(timer)
  res.once('finish', stop)
  res.once('close', stop)
  return {
    start() {
      stop()
      if (res.writableFinished || res.destroyed) return
      timer = setTimeout(() => {
        log.info({ timeoutMs }, 'CSV download cut: its client took nothing for too long')
        res.destroy()
      }, timeoutMs)
    },
    stop
  }
}
