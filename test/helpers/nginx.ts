import { spawnSync } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { connect as connectTls } from 'node:tls'
import { freePort, hasExited, launch, projectRoot, stopLaunched, type Launched } from './processes.js'

/** The one place nginx is looked for, by the tests and the benchmarks alike: Debian's, a source build's, others'. */
export const nginxBinary = ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/bin/nginx'].find(
  (candidate) => spawnSync(candidate, ['-v']).status === 0
)

/** Why the nginx cases cannot run here, or undefined when they can. */
export function nginxSkipReason(): string | undefined {
  if (nginxBinary) return undefined
  const reason =
    'SKIPPED: nginx is not installed (apt-get install -y nginx; .ci/run does) — the nginx topology cases did not run'
  console.warn(`\n*** ${reason} ***\n`)
  return reason
}

/** deploy/nginx/nginx.conf, pointed at local replicas and a local port instead of Compose's names. */
export async function localNginxConf(upstreams: string[], port: number): Promise<string> {
  const conf = await readFile(path.join(projectRoot, 'deploy/nginx/nginx.conf'), 'utf8')
  const shipped = /server api:8080([^;]*);/.exec(conf)
  const servers = upstreams.map((address) => `server ${address}${shipped?.[1] ?? ''};`).join('\n    ')
  const local = conf.replace(/server api:8080[^;]*;/, servers).replace(/listen 9999;/, `listen 127.0.0.1:${port};`)
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

export const opensslBinary = ['/usr/bin/openssl', '/usr/local/bin/openssl'].find(
  (candidate) => spawnSync(candidate, ['version']).status === 0
)

/**
 * A one-day self-signed certificate for `subject` (e.g. `DNS:classroom.test` or `IP:127.0.0.1`),
 * written as `tls.crt` and `tls.key` in `dir`: what a TLS server block of nginx is tested with.
 */
export function selfSignedCertificate(dir: string, subject: string): { cert: string; key: string } {
  const cert = path.join(dir, 'tls.crt')
  const key = path.join(dir, 'tls.key')
  const name = subject.replace(/^(DNS|IP):/, '')
  const made = spawnSync(
    opensslBinary ?? 'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=${name}`].concat([
      '-addext',
      `subjectAltName=${subject}`,
      '-keyout',
      key,
      '-out',
      cert
    ]),
    { encoding: 'utf8', timeout: 30_000 }
  )
  if (made.status !== 0) throw new Error(`openssl could not make a certificate: ${made.stderr}`)
  return { cert, key }
}

export interface NginxOptions {
  /** Also serve deploy/nginx/tls.conf, on `port` (a free one if not given), with this certificate and key (PEM files). */
  tls?: { cert: string; key: string; port?: number }
  /** Worker processes instead of the shipped `auto` (a benchmark runs one, pinned beside the replicas). */
  workers?: number
  /** CPUs to run on (taskset). */
  cpus?: string
}

export interface NginxProcess extends Launched {
  /** The plain-HTTP server of nginx.conf. */
  url: string
  port: number
  /** The HTTPS server of tls.conf, when started with `tls`. */
  tlsUrl?: string
  tlsPort?: number
  /** Its error log so far (on stderr, as shipped). */
  errors(): string
  /** The JSON access log so far, one line per request. */
  accessLog(): Promise<string>
  /** Graceful (SIGQUIT: the requests in flight finish), kill -9 after 10 s; then its directory goes. */
  stop(): Promise<void>
}

/**
 * The lines of the shipped nginx.conf a local run changes, each checked to be there: the optional
 * servers from this run's directory (never the machine's /etc/nginx), the JSON access log into it
 * too (the nginx image links /var/log/nginx/access.log to its stdout), its temporary files, and the
 * number of workers. As root, workers stay root so they can reach the run's directory.
 */
function adapt(conf: string, dir: string, workers: number | 'auto'): string {
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((kind) => `${kind}_temp_path ${path.join(dir, kind)};`)
    .join('\n  ')
  const rewrites: Array<[RegExp, string]> = [
    [/include \/etc\/nginx\/tandem\.d\/\*\.conf;/, `include ${path.join(dir, 'tandem.d')}/*.conf;`],
    [/access_log \/var\/log\/nginx\/access\.log /, `access_log ${path.join(dir, 'logs', 'access.log')} `],
    [/^worker_processes [^;]+;/m, `${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes ${workers};`],
    [/^http \{/m, `http {\n  ${temp}`]
  ]
  return rewrites.reduce((text, [line, local]) => {
    if (!line.test(text))
      throw new Error(`deploy/nginx/nginx.conf no longer has the line the harness rewrites (${line})`)
    return text.replace(line, local)
  }, conf)
}

/**
 * nginx with deploy/nginx/nginx.conf (and tls.conf, with `tls`) in front of `upstreams`
 * (host:port), in a process group of its own, with its pid, logs and temporary files in a
 * directory of its own.
 */
export async function startNginx(
  upstreams: string[],
  { tls, workers, cpus }: NginxOptions = {}
): Promise<NginxProcess> {
  if (!nginxBinary) throw new Error('nginx is not installed (apt-get install -y nginx)')
  const dir = await mkdtemp(path.join(tmpdir(), 'tandem-nginx-'))
  await mkdir(path.join(dir, 'logs'))
  await mkdir(path.join(dir, 'tandem.d'))
  const port = await freePort()
  const tlsPort = tls ? (tls.port ?? (await freePort())) : undefined
  const confFile = path.join(dir, 'nginx.conf')
  await writeFile(confFile, adapt(await localNginxConf(upstreams, port), dir, workers ?? 'auto'))
  if (tls) await writeFile(path.join(dir, 'tandem.d', 'tls.conf'), await localTlsConf(tlsPort!, tls.cert, tls.key))
  const launched = launch(
    'nginx',
    [nginxBinary, '-p', dir, '-c', confFile, '-g', `daemon off; pid ${dir}/nginx.pid;`],
    { cpus }
  )
  const stop = async () => {
    await stopLaunched(launched, { signal: 'SIGQUIT', groupSignal: false, graceMs: 10_000 })
    await rm(dir, { recursive: true, force: true })
  }
  try {
    await waitForStatus(`http://127.0.0.1:${port}`, launched)
    if (tlsPort !== undefined) await waitForTls(tlsPort, launched.output)
  } catch (error) {
    await stop()
    throw error
  }
  const accessLog = path.join(dir, 'logs', 'access.log')
  return {
    ...launched,
    url: `http://127.0.0.1:${port}`,
    port,
    tlsUrl: tlsPort === undefined ? undefined : `https://127.0.0.1:${tlsPort}`,
    tlsPort,
    errors: launched.output,
    accessLog: () => readFile(accessLog, 'utf8').catch(() => ''),
    stop
  }
}

/** Until nginx's own /nginx_status answers: it listens, whatever the upstreams are doing. */
async function waitForStatus(url: string, nginx: Launched) {
  for (const deadline = Date.now() + 10_000; ; await sleep(50)) {
    if (hasExited(nginx.child)) throw new Error(`nginx exited: ${nginx.output()}`)
    if (Date.now() > deadline) throw new Error(`nginx did not listen within 10 s: ${nginx.output()}`)
    if (
      await fetch(`${url}/nginx_status`).then(
        (res) => res.ok,
        () => false
      )
    )
      return
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
      socket.on('timeout', () => {
        socket.destroy()
        resolve(false)
      })
    })
    if (ok) return
  }
}
