/** The sign-in QR code, drawn as SVG nodes (no markup strings), with error correction H so a projector's glare still scans. */
import qrcode from 'qrcode-generator'

const svgNs = 'http://www.w3.org/2000/svg'
const quietZone = 4

// The library's default keeps only the low byte of each character; QR readers expect UTF-8.
qrcode.stringToBytes = (text) => Array.from(new TextEncoder().encode(text))

export function qrCode(
  text: string,
  { dark = '#111827', light = '#ffffff', label }: { dark?: string; light?: string; label: string }
): SVGSVGElement {
  const code = qrcode(0, 'H')
  code.addData(text)
  code.make()
  const count = code.getModuleCount()
  const size = count + 2 * quietZone
  let path = ''
  for (let row = 0; row < count; row++) {
    for (let col = 0; col < count; col++) {
      if (code.isDark(row, col)) path += `M${col + quietZone} ${row + quietZone}h1v1h-1z`
    }
  }
  const svg = document.createElementNS(svgNs, 'svg')
  svg.setAttribute('viewBox', `0 0 ${size} ${size}`)
  svg.setAttribute('role', 'img')
  svg.setAttribute('aria-label', label)
  svg.setAttribute('shape-rendering', 'crispEdges')
  const background = document.createElementNS(svgNs, 'rect')
  background.setAttribute('width', String(size))
  background.setAttribute('height', String(size))
  background.setAttribute('fill', light)
  const modules = document.createElementNS(svgNs, 'path')
  modules.setAttribute('d', path)
  modules.setAttribute('fill', dark)
  svg.append(background, modules)
  return svg
}
