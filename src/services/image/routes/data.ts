import { createHash } from 'node:crypto';
import { Readable, type Writable } from 'node:stream';
import { Type } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import { ApiError } from '../../../core/http/errors.js';
import type { App } from '../../../core/http/server.js';
import { authorize, glanceError, type ImageContext, imageTarget, isAdmin } from '../context.js';
import { imageNotFound, mediaType, visibleImage } from './images.js';

const ImageId = Type.Object({ id: Type.String({ maxLength: 255 }) });

export interface Received {
  size: number;
  checksum: string;
  hashValue: string;
}

/**
 * Pumps `source` into `sink` with backpressure, hashing (MD5 and SHA-512) and counting as it goes. Rejects with
 * `tooBig()` as soon as more than `cap` bytes arrived (the rest of the request is then read and discarded), and
 * with a 400 if the client goes away before the end. Never destroys `source`: that would kill the socket the
 * error response has to go out on. Does not end `sink`; the caller commits or aborts it.
 */
export function receive(source: Readable, sink: Writable, cap: number, tooBig: () => Error): Promise<Received> {
  return new Promise((resolve, reject) => {
    const md5 = createHash('md5');
    const sha512 = createHash('sha512');
    let size = 0;
    let settled = false;
    const cleanup = () => {
      source.off('data', onData);
      source.off('end', onEnd);
      source.off('error', onError);
      source.off('close', onClose);
      sink.off('drain', onDrain);
      sink.off('error', onError);
    };
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      cleanup();
      // Swallow what is still coming (and late errors) so the response can be written.
      source.on('error', () => {});
      source.resume();
      reject(err);
    };
    function onData(chunk: Buffer) {
      size += chunk.length;
      if (size > cap) return fail(tooBig());
      md5.update(chunk);
      sha512.update(chunk);
      if (!sink.write(chunk)) source.pause();
    }
    function onDrain() {
      source.resume();
    }
    function onEnd() {
      if (settled) return;
      settled = true;
      cleanup();
      resolve({ size, checksum: md5.digest('hex'), hashValue: sha512.digest('hex') });
    }
    function onError(err: Error) {
      fail(
        err instanceof ApiError
          ? err
          : glanceError(400, `Image upload failed: ${err.message || 'the connection was closed'}.`),
      );
    }
    function onClose() {
      if (!source.readableEnded)
        fail(glanceError(400, 'Image upload failed: the client closed the connection before sending all data.'));
    }
    source.on('data', onData);
    source.on('end', onEnd);
    source.on('error', onError);
    source.on('close', onClose);
    sink.on('drain', onDrain);
    sink.on('error', onError);
    source.resume();
  });
}

/** A single `bytes=` range against `size` bytes: null to ignore the header, 'unsatisfiable' for a 416. */
export function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | null | 'unsatisfiable' {
  if (!header) return null;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return null;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(m[1]);
  if (m[2] !== '' && Number(m[2]) < start) return null;
  if (start >= size) return 'unsatisfiable';
  const end = m[2] === '' ? size - 1 : Number(m[2]);
  return { start, end: Math.min(end, size - 1) };
}

/** Upload (`PUT …/file`, streamed to the data store) and download (`GET …/file`, streamed, with Range). */
export function dataRoutes(app: App, ix: ImageContext): void {
  const { repo } = ix;

  // The raw request stream reaches the handler: nothing is buffered, whatever the size.
  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));

  // Errors are answered at once but the connection stays open: Node discards the rest of the body. Closing it
  // instead makes python-requests clients (glanceclient, openstacksdk), which send the whole body before reading
  // the response, fail with a broken pipe rather than show the error.
  const requireOctetStream = async (req: FastifyRequest) => {
    if (mediaType(req) !== 'application/octet-stream') {
      throw glanceError(415, 'Unsupported Content-Type: image data must be sent as application/octet-stream.');
    }
  };

  app.put(
    '/v2/images/:id/file',
    {
      schema: { params: ImageId },
      config: { agentAccess: true },
      preParsing: requireOctetStream,
      bodyLimit: Math.min(ix.settings.maxUploadBytes, Number.MAX_SAFE_INTEGER),
    },
    async (req, reply) => {
      const { id } = req.params as { id: string };
      const source = (req.body as Readable | undefined) ?? Readable.from([]);
      const { row, memberId } = await visibleImage(ix, req, id);
      authorize(ix, req, 'upload_image', imageTarget(row, memberId));
      if (row.status !== 'queued')
        throw glanceError(409, `Image status transition from ${row.status} to saving is not allowed`);
      if (!row.container_format || !row.disk_format)
        throw glanceError(400, 'Properties container_format and disk_format must be set prior to saving data.');

      const { maxUploadBytes, quotaBytes } = ix.settings;
      let cap = maxUploadBytes;
      let tooBig = () =>
        glanceError(413, `Image exceeds the storage quota: the maximum image size is ${maxUploadBytes} bytes.`);
      if (quotaBytes !== null && row.owner) {
        const left = Math.max(0, quotaBytes - (await repo.usage(row.owner)));
        if (left < cap) {
          cap = left;
          tooBig = () =>
            glanceError(
              413,
              `Denying attempt to upload image because it exceeds the quota: the remaining storage quota of project ${row.owner} is ${left} bytes (quota ${quotaBytes} bytes).`,
            );
        }
      }
      const declared = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) : undefined;
      if (declared !== undefined && declared > cap) throw tooBig();

      if (!(await repo.transition(id, ['queued'], { status: 'saving' }))) {
        const fresh = await repo.get(id);
        if (!fresh) throw imageNotFound(id);
        throw glanceError(409, `Image status transition from ${fresh.status} to saving is not allowed`);
      }
      const writer = await ix.data.begin(id);
      let got: Received;
      let location: string;
      try {
        got = await receive(source, writer.stream, cap, tooBig);
        location = await writer.commit();
      } catch (err) {
        await writer.abort();
        await repo.transition(id, ['saving'], { status: 'queued' });
        throw err;
      }
      const done = await repo.transition(id, ['saving'], {
        status: 'active',
        size: got.size,
        checksum: got.checksum,
        os_hash_algo: 'sha512',
        os_hash_value: got.hashValue,
        location,
      });
      if (!done) {
        await ix.data.delete(location);
        throw glanceError(
          410,
          `Image ${id} could not be found after upload. The image may have been deleted during the upload.`,
        );
      }
      reply.code(204).send();
    },
  );

  app.get('/v2/images/:id/file', { schema: { params: ImageId }, config: { agentAccess: true } }, async (req, reply) => {
    const { id } = req.params as { id: string };
    const { row, memberId } = await visibleImage(ix, req, id);
    authorize(ix, req, 'download_image', imageTarget(row, memberId));
    if (row.status === 'deactivated' && !isAdmin(ix, req))
      throw glanceError(403, 'The requested image has been deactivated. Image data download is prohibited.');
    if (!row.location || (row.status !== 'active' && row.status !== 'deactivated')) return reply.code(204).send();
    const size = Number(row.size ?? 0);
    const range = parseRange(req.headers.range, size);
    if (range === 'unsatisfiable')
      throw glanceError(416, `Requested range not satisfiable: the image is ${size} bytes.`, {
        'Content-Range': `bytes */${size}`,
      });
    const stream = await ix.data.open(row.location, range ?? undefined);
    if (!stream) throw glanceError(404, `Image data for image ${id} is missing from the ${ix.data.name} store.`);
    reply.header('Content-Type', 'application/octet-stream').header('Accept-Ranges', 'bytes');
    if (range) {
      reply
        .code(206)
        .header('Content-Range', `bytes ${range.start}-${range.end}/${size}`)
        .header('Content-Length', String(range.end - range.start + 1));
    } else {
      reply.header('Content-Length', String(size));
      if (row.checksum) reply.header('Content-MD5', row.checksum);
    }
    return reply.send(stream);
  });
}
