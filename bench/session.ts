/** A new user logged in on `url`: the bearer token of its session. */
export async function login(url: string): Promise<string> {
  const credentials = {
    email: `bench-${Date.now()}-${Math.random().toString(36).slice(2)}@example.com`,
    password: 'benchmark password'
  }
  const post = (path: string) =>
    fetch(`${url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(credentials)
    })
  await post('/api/users')
  const session = (await (await post('/api/sessions')).json()) as { token: string }
  return session.token
}
