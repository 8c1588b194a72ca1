// A local npm registry that records what is published to it, in order: the publish half of the
// registry protocol (PUT /<name> with the tarball attached) and the read half for what was
// published here (GET the packument, GET a tarball). Reads of anything else are redirected to
// `upstream` (so `npm ci` works with this as its registry, as with setup-node's registry-url);
// publishes never leave this machine.
import { createServer } from 'node:http'

/**
 * Starts the registry on 127.0.0.1; resolves with { url, publishes, close() }. `owns(name)`: the
 * packages only this registry answers for (never looked up upstream, where a namesake may exist).
 */
export function startRegistry({ upstream, owns }) {
  const packuments = new Map()
  const tarballs = new Map()
  /** One entry per publish, in arrival order: { name, version, distTags, manifest, tarball }. */
  const publishes = []
  const server = createServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      const path = decodeURIComponent(new URL(req.url, 'http://registry').pathname).slice(1)
      const reply = (status, body) => {
        res.writeHead(status, { 'content-type': 'application/json' })
        res.end(JSON.stringify(body))
      }
      if (req.method === 'GET' && tarballs.has(path)) {
        res.writeHead(200, { 'content-type': 'application/octet-stream' })
        return res.end(tarballs.get(path))
      }
      if (req.method === 'GET' && packuments.has(path)) return reply(200, packuments.get(path))
      if (req.method === 'PUT' && !path.includes('/-/')) {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
        const [version, manifest] = Object.entries(body.versions)[0]
        const [file, attachment] = Object.entries(body._attachments)[0]
        const tarball = Buffer.from(attachment.data, 'base64')
        const known = packuments.get(body.name) ?? { name: body.name, 'dist-tags': {}, versions: {} }
        if (known.versions[version]) return reply(403, { error: `cannot publish over ${body.name}@${version}` })
        const tarballPath = `${body.name}/-/${file.split('/').pop()}`
        known.versions[version] = { ...manifest, dist: { ...manifest.dist, tarball: `${registry.url}${tarballPath}` } }
        Object.assign(known['dist-tags'], body['dist-tags'])
        packuments.set(body.name, known)
        tarballs.set(tarballPath, tarball)
        publishes.push({ name: body.name, version, distTags: body['dist-tags'], manifest, tarball })
        return reply(201, { ok: true })
      }
      if ((req.method === 'GET' || req.method === 'HEAD') && !owns(path.split('/-/')[0])) {
        res.writeHead(302, { location: new URL(req.url.slice(1), upstream).href })
        return res.end()
      }
      if (req.method === 'GET' || req.method === 'HEAD') return reply(404, { error: `${path} was not published here` })
      reply(405, { error: `${req.method} ${path} is not served here` })
    })
  })
  const registry = {
    url: '',
    publishes,
    packuments,
    close: () => new Promise((resolve) => server.close(resolve)),
  }
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      registry.url = `http://127.0.0.1:${server.address().port}/`
      resolve(registry)
    })
  })
}
