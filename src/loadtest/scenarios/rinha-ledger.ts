/** The five seeded clients of the Rinha contract, by id. */
export const clientLimits = new Map([
  [1, 100000],
  [2, 80000],
  [3, 1000000],
  [4, 10000000],
  [5, 500000]
])

/** Where the ledger reports a contradiction between answers. */
export type Inconsistency = (name: string, detail: string) => void

/** What the driver knows of one client's balance from the answers it got. */
interface Account {
  limit: number
  /** The balance before the run. */
  baseline: number
  /** Sum of every transaction acknowledged with 200. */
  acked: number
  ackedDebits: number
  inFlightDebits: number
  /** Transactions that may or may not have been applied (timeouts, resets, 5xx). */
  unknownCredits: number
  unknownDebits: number
}

export interface Ticket {
  id: number
  tipo: 'c' | 'd'
  valor: number
  ackedAtSend: number
  ackedDebitsAtSend: number
}

export interface FinalBalance {
  id: number
  expected: number
  actual: number | undefined
  verdict: 'match' | 'inconclusive' | 'mismatch'
}

/**
 * Checks every answer against the contract and against what earlier answers prove. Requests run
 * concurrently, so a check on the balance uses bounds: what was certainly applied before a request
 * was sent, and what may have been applied while it was in flight.
 */
export class Ledger {
  private readonly accounts = new Map<number, Account>()

  constructor(private readonly inconsistency: Inconsistency) {
    for (const [id, limit] of clientLimits) {
      this.accounts.set(id, {
        limit,
        baseline: 0,
        acked: 0,
        ackedDebits: 0,
        inFlightDebits: 0,
        unknownCredits: 0,
        unknownDebits: 0
      })
    }
  }

  setBaseline(id: number, saldo: number) {
    this.account(id).baseline = saldo
  }

  begin(id: number, tipo: 'c' | 'd', valor: number): Ticket {
    const account = this.account(id)
    if (tipo === 'd') account.inFlightDebits += valor
    return { id, tipo, valor, ackedAtSend: account.acked, ackedDebitsAtSend: account.ackedDebits }
  }

  accepted(ticket: Ticket, body: BalanceBody) {
    const account = this.settle(ticket)
    account.acked += ticket.tipo === 'c' ? ticket.valor : -ticket.valor
    if (ticket.tipo === 'd') account.ackedDebits += ticket.valor
    this.checkLimit(account, ticket.id, body.limite, body.saldo, 'transacoes')
  }

  /**
   * A refusal is wrong when the debit fits even at the lowest balance the client could have had:
   * everything acknowledged before the send, minus every debit that could have run concurrently.
   */
  refused(ticket: Ticket) {
    const account = this.settle(ticket)
    const concurrentDebits =
      account.ackedDebits - ticket.ackedDebitsAtSend + account.inFlightDebits + account.unknownDebits
    const lowest = account.baseline + ticket.ackedAtSend - concurrentDebits
    if (lowest - ticket.valor >= -account.limit) {
      this.inconsistency(
        'unjustified-422',
        `client ${ticket.id} debit ${ticket.valor} refused though the balance was at least ${lowest}`
      )
    }
  }

  unknown(ticket: Ticket) {
    const account = this.settle(ticket)
    if (ticket.tipo === 'c') account.unknownCredits += ticket.valor
    else account.unknownDebits += ticket.valor
  }

  /** A statement's shape, limit and order; false when it is not a statement at all. */
  statement(id: number, body: unknown): boolean {
    if (!isStatement(body)) {
      this.inconsistency('extrato-shape', `client ${id}: ${JSON.stringify(body)?.slice(0, 200)}`)
      return false
    }
    this.checkLimit(this.account(id), id, body.saldo.limite, body.saldo.total, 'extrato')
    const listed = body.ultimas_transacoes
    if (listed.length > 10) this.inconsistency('extrato-too-long', `client ${id}: ${listed.length} transactions`)
    const times = listed.map((t) => Date.parse(t.realizada_em))
    if (times.some((time, i) => Number.isNaN(time) || (i > 0 && time > times[i - 1]))) {
      this.inconsistency('extrato-order', `client ${id}: ${listed.map((t) => t.realizada_em).join(', ')}`)
    }
    return true
  }

  /** The balance the server reports now against every acknowledged transaction (fresh database). */
  final(id: number, body: unknown): FinalBalance {
    const account = this.account(id)
    const expected = account.baseline + account.acked
    const actual = isStatement(body) ? body.saldo.total : undefined
    const verdict = verdictOf(account, expected, actual)
    if (verdict === 'mismatch') {
      this.inconsistency('final-balance', `client ${id}: saldo ${actual}, acknowledged transactions give ${expected}`)
    }
    return { id, expected, actual, verdict }
  }

  private settle(ticket: Ticket): Account {
    const account = this.account(ticket.id)
    if (ticket.tipo === 'd') account.inFlightDebits -= ticket.valor
    return account
  }

  private checkLimit(account: Account, id: number, limite: number, saldo: number, route: string) {
    if (limite !== account.limit) {
      this.inconsistency('wrong-limit', `${route} client ${id}: limite ${limite}, expected ${account.limit}`)
    }
    if (saldo < -account.limit) {
      this.inconsistency('saldo-below-limit', `${route} client ${id}: saldo ${saldo} < -${account.limit}`)
    }
  }

  private account(id: number): Account {
    const account = this.accounts.get(id)
    if (!account) throw new Error(`client ${id} is not one of the seeded clients`)
    return account
  }
}

function verdictOf(account: Account, expected: number, actual: number | undefined): FinalBalance['verdict'] {
  if (actual === expected) return 'match'
  const possible =
    actual !== undefined && actual >= expected - account.unknownDebits && actual <= expected + account.unknownCredits
  return possible && account.unknownCredits + account.unknownDebits > 0 ? 'inconclusive' : 'mismatch'
}

export interface BalanceBody {
  limite: number
  saldo: number
}

export interface StatementBody {
  saldo: { total: number; limite: number; data_extrato: string }
  ultimas_transacoes: Array<{ valor: number; tipo: string; descricao: string; realizada_em: string }>
}

export function isBalance(body: unknown): body is BalanceBody {
  const b = body as BalanceBody | null
  return typeof b === 'object' && b !== null && Number.isInteger(b.limite) && Number.isInteger(b.saldo)
}

export function isStatement(body: unknown): body is StatementBody {
  const b = body as StatementBody | null
  return (
    typeof b === 'object' &&
    b !== null &&
    typeof b.saldo === 'object' &&
    b.saldo !== null &&
    Number.isInteger(b.saldo.total) &&
    Number.isInteger(b.saldo.limite) &&
    typeof b.saldo.data_extrato === 'string' &&
    Array.isArray(b.ultimas_transacoes) &&
    b.ultimas_transacoes.every(isListedTransaction)
  )
}

function isListedTransaction(t: StatementBody['ultimas_transacoes'][number]): boolean {
  return (
    typeof t === 'object' &&
    t !== null &&
    Number.isInteger(t.valor) &&
    t.valor > 0 &&
    (t.tipo === 'c' || t.tipo === 'd') &&
    typeof t.descricao === 'string' &&
    typeof t.realizada_em === 'string'
  )
}
