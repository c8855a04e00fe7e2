/**
 * What Zun and the agents need of the image service (Glance), as an in-process port. It lives here, below both
 * sides: the agent's image side (`host.ts`) and the Zun facade use it, the Glance facade implements it
 * (`services/image/in-process.ts`) and `src/app/` wires the one to the others. Types only.
 */
import type { Readable } from 'node:stream';

/** An image record as its consumers see it. */
export interface GlanceImage {
  id: string;
  name: string | null;
  /** Glance's status: queued, saving, active, killed, deleted, deactivated, … */
  status: string;
  /** MD5 of the data (Glance's `checksum`); null until data is stored. */
  checksum: string | null;
  /** Whether the image is active with data stored (something to download). */
  hasData: boolean;
}

/** `visibleTo`'s answer: the image, or why there is none (the message is Zun's, fit for a status_reason). */
export type GlanceLookup =
  | { found: true; image: GlanceImage }
  | { found: false; reason: 'not_found' | 'ambiguous'; message: string };

/** An image's data opened for reading, with the checksum it must match. */
export interface GlanceData {
  data: Readable;
  /** MD5 Glance recorded for the data (null if it recorded none). */
  checksum: string | null;
}

/** Who searches: a project and whether Zun's admin rule holds for the caller. */
export interface GlanceViewer {
  projectId?: string;
  admin: boolean;
}

export interface GlancePort {
  /**
   * Zun's `find_image`: the container-format `docker` image `idOrName` (an id, a name, or `name:tag`) that project
   * `projectId` may use — public, community, its own, or shared with it. Another project's private image is
   * `not_found`, exactly as a missing one.
   */
  visibleTo(projectId: string, idOrName: string): Promise<GlanceLookup>;
  /** The data of image `imageId` (no visibility check: callers resolve the image with `visibleTo` first); null when
   * the image or its data is gone. */
  open(imageId: string): Promise<GlanceData | null>;
  /**
   * Zun's image search with `image_driver=glance`: docker images the viewer may see whose name is `name` (`exact`) or
   * contains it, with tag `tag` when given; in Glance's image view (what `GET /v2/images/{id}` answers).
   */
  search(
    viewer: GlanceViewer,
    query: { name: string; exact: boolean; tag?: string },
  ): Promise<Record<string, unknown>[]>;
  /** The record a container commit fills: a private `docker`/`raw` image of `projectId`, queued, tagged `tag`. */
  createFromCommit(params: { projectId: string; name: string; tag: string }): Promise<GlanceImage>;
  /**
   * Stores `data` as the queued image's data (queued → saving → active with size and hashes). On failure the image
   * is queued again and the error thrown; the stream is consumed or destroyed either way.
   */
  finishCommit(imageId: string, data: Readable): Promise<GlanceImage>;
  /** A commit that failed: its image is deleted with any data, as Zun does. */
  failCommit(imageId: string): Promise<void>;
}
