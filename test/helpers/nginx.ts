import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { connect as connectTls } from 'node:tls'
import { freePort } from '../../src/db/embedded.js'
import { projectRoot } from './servers.js'

export const nginxBinary = ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/bin/nginx']
  .find((candidate) => spawnSync(candidate, ['-v']).status === 0)

/** Why the nginx cases cannot run here, or undefined when they can. */
export function nginxSkipReason(): string | undefined {
  if (nginxBinary) return undefined
  const reason = 'SKIPPED: nginx is not installed (apt-get install -y nginx; .ci/run does) — the nginx topology cases did not run'
  console.warn(`\n*** ${reason} ***\n`)
  return reason
}

/** deploy/nginx/nginx.conf, pointed at local replicas and a local port instead of Compose's names. */
export async function localNginxConf(upstreams: string[], port: number): Promise<string> {
  const conf = await readFile(path.join(projectRoot, 'deploy/nginx/nginx.conf'), 'utf8')
  const shipped = /server api:8080([^;]*);/.exec(conf)
  const servers = upstreams.map((address) => `server ${address}${shipped?.[1] ?? ''};`).join('\n    ')
  const local = conf
    .replace(/server api:8080[^;]*;/, servers)
    .replace(/listen 9999;/, `listen 127.0.0.1:${port};`)
  if (local === conf) throw new Error('deploy/nginx/nginx.conf no longer has the lines this test rewrites')
  return local
}

/** deploy/nginx/tls.conf on a local port, with the certificate and key at `cert` and `key`. */
export async function localTlsConf(port: number, cert: string, key: string): Promise<string> {
  const conf = await readFile(path.join(projectRoot, 'deploy/nginx/tls.conf'), 'utf8')
  const rewrites: Array<[RegExp, string]> = [
    [/listen 443 ssl( http2)?;/, `listen 127.0.0.1:${port} ssl$1;`],
    [/ssl_certificate \/etc\/nginx\/tls\/tls\.crt;/, `ssl_certificate ${cert};`],
    [/ssl_certificate_key \/etc\/nginx\/tls\/tls\.key;/, `ssl_certificate_key ${key};`]
  ]
  return rewrites.reduce((text, [line, local]) => {
    if (!line.test(text)) throw new Error(`deploy/nginx/tls.conf no longer has the line this test rewrites (${line})`)
    return text.replace(line, local)
  }, conf)
}

export interface NginxOptions {
  /** Also serve deploy/nginx/tls.conf, on `port` (a free one if not given), with this certificate and key (PEM files). */
  tls?: { cert: string, key: string, port?: number }
}

export interface NginxProcess {
  /** The plain-HTTP server of nginx.conf. */
  url: string
  port: number
  /** The HTTPS server of tls.conf, when started with `tls`. */
  tlsUrl?: string
  tlsPort?: number
  /** What nginx wrote on stderr (its error log). */
  errors(): string
  /** The JSON access log so far, one line per request. */
  accessLog(): Promise<string>
  stop(): Promise<void>
}

const shippedInclude = 'include /etc/nginx/tandem.d/*.conf;'
const shippedAccessLog = 'access_log /var/log/nginx/access.log '

/**
 * nginx with deploy/nginx/nginx.conf (and tls.conf, with `tls`) in front of `upstreams`
 * (host:port). Its pid, logs and temporary files live in a directory of its own, the JSON access
 * log too (the nginx image links /var/log/nginx/access.log to its stdout).
 */
export async function startNginx(upstreams: string[], { tls }: NginxOptions = {}): Promise<NginxProcess> {
  const dir = await mkdtemp(path.join(tmpdir(), 'tandem-nginx-'))
  await mkdir(path.join(dir, 'logs'))
  await mkdir(path.join(dir, 'tandem.d'))
  const port = await freePort()
  const tlsPort = tls ? tls.port ?? await freePort() : undefined
  const confFile = path.join(dir, 'nginx.conf')
  const conf = await localNginxConf(upstreams, port)
  if (!conf.includes(shippedInclude)) throw new Error(`deploy/nginx/nginx.conf no longer has "${shippedInclude}"`)
  // The optional servers come from this directory, never from the machine's /etc/nginx.
  if (!conf.includes(shippedAccessLog)) throw new Error(`deploy/nginx/nginx.conf no longer has "${shippedAccessLog}"`)
  const accessLog = path.join(dir, 'logs', 'access.log')
  await writeFile(confFile, conf
    .replace(shippedInclude, `include ${path.join(dir, 'tandem.d')}/*.conf;`)
    .replace(shippedAccessLog, `access_log ${accessLog} `))
  if (tls) await writeFile(path.join(dir, 'tandem.d', 'tls.conf'), await localTlsConf(tlsPort!, tls.cert, tls.key))
  const child: ChildProcess = spawn(nginxBinary!, ['-p', dir, '-c', confFile, '-g', `daemon off; pid ${dir}/nginx.pid;`], {
    stdio: ['ignore', 'ignore', 'pipe']
  })
  let errors = ''
  child.stderr!.on('data', (chunk) => { errors += chunk })
  const url = `http://127.0.0.1:${port}`
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit')
      child.kill('SIGQUIT') // graceful: finish the requests in flight
      await Promise.race([exited, sleep(10_000)])
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL')
        await exited
      }
    }
    await rm(dir, { recursive: true, force: true })
  }
  try {
    for (const deadline = Date.now() + 10_000; ; await sleep(50)) {
      if (child.exitCode !== null) throw new Error(`nginx exited: ${errors}`)
      if (Date.now() > deadline) throw new Error(`nginx did not listen within 10 s: ${errors}`)
      if (await fetch(`${url}/nginx_status`).then((res) => res.ok, () => false)) break
    }
    if (tlsPort !== undefined) await waitForTls(tlsPort, () => errors)
  } catch (error) {
    await stop()
    throw error
  }
  return {
    url,
    port,
    tlsUrl: tlsPort === undefined ? undefined : `https://127.0.0.1:${tlsPort}`,
    tlsPort,
    errors: () => errors,
    accessLog: () => readFile(accessLog, 'utf8').catch(() => ''),
    stop
  }
}

/** Until a TLS handshake on the port succeeds (any certificate): the HTTPS server is up. */
async function waitForTls(port: number, errors: () => string) {
  for (const deadline = Date.now() + 10_000; ; await sleep(50)) {
    if (Date.now() > deadline) throw new Error(`nginx did not accept TLS on ${port} within 10 s: ${errors()}`)
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connectTls({ host: '127.0.0.1', port, rejectUnauthorized: false, timeout: 1000 }, () => {
        socket.end()
        resolve(true)
      })
      socket.on('error', () => resolve(false))
      socket.on('timeout', () => { socket.destroy(); resolve(false) })
    })
    if (ok) return
  }
}
