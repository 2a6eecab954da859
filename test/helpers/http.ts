// eslint-disable-next-line @typescript-eslint/no-explicit-any
export interface Response<T = any> {
  status: number
  headers: Headers
  body: T
  text: string
}

/** Real HTTP to a server under test; JSON bodies are parsed when the server says they are JSON. */
export async function request<T = any>( // eslint-disable-line @typescript-eslint/no-explicit-any
  base: string,
  method: string,
  path: string,
  { json, body, headers = {} }: { json?: unknown; body?: string | Buffer; headers?: Record<string, string> } = {}
): Promise<Response<T>> {
  const init: RequestInit = { method, headers: { ...headers } }
  if (json !== undefined) {
    init.body = JSON.stringify(json)
    ;(init.headers as Record<string, string>)['content-type'] ??= 'application/json'
  } else if (body !== undefined) {
    init.body = body
  }
  const res = await fetch(new URL(path, base), { ...init, signal: AbortSignal.timeout(30_000) })
  const text = await res.text()
  const isJson = res.headers.get('content-type')?.includes('json')
  return { status: res.status, headers: res.headers, text, body: isJson && text ? JSON.parse(text) : text }
}

export const client = (base: string) => ({
  get: <T = any>(path: string, headers?: Record<string, string>) => request<T>(base, 'GET', path, { headers }), // eslint-disable-line @typescript-eslint/no-explicit-any
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  post: <T = any>(path: string, json: unknown, headers?: Record<string, string>) =>
    request<T>(base, 'POST', path, { json, headers })
})
