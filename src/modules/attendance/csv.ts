/** RFC 4180: fields separated by commas, records by CRLF. */
const lineEnd = '\r\n'

// A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): a student
// named "=HYPERLINK(…)" must stay text, so such a cell gets a leading apostrophe (OWASP's advice).
const formulaStart = /^[=+\-@\t\r]/

/** One CSV field: neutralised if it could run as a formula, quoted if it holds a comma, quote or line break. */
export function csvField(value: string | number): string {
  let text = String(value)
  if (typeof value === 'string' && formulaStart.test(text)) text = `'${text}`
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text
}

export function csvRecord(fields: Array<string | number>): string {
  return fields.map(csvField).join(',') + lineEnd
}
