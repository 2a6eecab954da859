import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
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

export interface NginxProcess {
  url: string
  stop(): Promise<void>
}

export async function startNginx(upstreams: string[]): Promise<NginxProcess> {
  const dir = await mkdtemp(path.join(tmpdir(), 'tandem-nginx-'))
  await mkdir(path.join(dir, 'logs'))
  const port = await freePort()
  const confFile = path.join(dir, 'nginx.conf')
  await writeFile(confFile, await localNginxConf(upstreams, port))
  const child: ChildProcess = spawn(nginxBinary!, ['-p', dir, '-c', confFile, '-g', `daemon off; pid ${dir}/nginx.pid;`], {
    stdio: ['ignore', 'ignore', 'pipe']
  })
  let errors = ''
  child.stderr!.on('data', (chunk) => { errors += chunk })
  const url = `http://127.0.0.1:${port}`
  for (const deadline = Date.now() + 10_000; ; await sleep(50)) {
    if (child.exitCode !== null) throw new Error(`nginx exited: ${errors}`)
    if (Date.now() > deadline) throw new Error(`nginx did not listen within 10 s: ${errors}`)
    if (await fetch(`${url}/nginx_status`).then((res) => res.ok, () => false)) break
  }
  return {
    url,
    async stop() {
      if (child.exitCode === null) {
        const exited = once(child, 'exit')
        child.kill('SIGQUIT') // graceful: finish the requests in flight
        await exited
      }
      await rm(dir, { recursive: true, force: true })
    }
  }
}
