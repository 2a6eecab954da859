/** The teacher pages' frame: who is signed in (else the login page), the top bar menu and the sidebar. */
import { api, type User } from './api.js'
import { byId } from './dom.js'

export function displayName(user: User): string {
  const name = `${user.firstName} ${user.lastName}`.trim()
  return name === '' ? user.email : name
}

export function showUser(user: User): void {
  const name = displayName(user)
  byId('user-name').textContent = name
  const initials = name
    .split(/\s+/)
    .filter(Boolean)
    .map((word) => word[0])
    .slice(0, 2)
    .join('')
  document.querySelector('.avatar')!.textContent = initials.toUpperCase()
}

/** Resolves with the signed-in teacher once the frame is ready; without a session the browser goes to login.html. */
export async function startShell(): Promise<User> {
  markCurrentPage()
  setUpUserMenu()
  const user = await api<User>('GET', '/api/users/me')
  showUser(user)
  document.body.classList.add('ready')
  return user
}

function markCurrentPage(): void {
  const page = location.pathname.split('/').pop() || 'index.html'
  for (const link of document.querySelectorAll<HTMLAnchorElement>('.sidebar a')) {
    if (link.getAttribute('href') === page) link.setAttribute('aria-current', 'page')
  }
}

function setUpUserMenu(): void {
  const toggle = byId<HTMLButtonElement>('user-menu-button')
  const menu = byId('user-menu')
  const setOpen = (open: boolean) => {
    menu.hidden = !open
    toggle.setAttribute('aria-expanded', String(open))
  }
  toggle.addEventListener('click', () => setOpen(menu.hidden))
  document.addEventListener('click', (event) => {
    if (!menu.hidden && !toggle.contains(event.target as Node) && !menu.contains(event.target as Node)) setOpen(false)
  })
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !menu.hidden) {
      setOpen(false)
      toggle.focus()
    }
  })
  byId<HTMLButtonElement>('logout').addEventListener('click', async () => {
    try {
      await api('DELETE', '/api/sessions', { loginOn401: false })
    } catch {
      // Already signed out (401) or the server is away: the login page is right either way.
    }
    location.assign('login.html')
  })
}
