import { ApiError } from '../core/http/errors.js';

/**
 * An error of the container domain: an HTTP-like status and Zun's exception class (`NotFound`, `Conflict`,
 * `OverQuota`, `InvalidStateException`, …). The Zun facade renders it as `container.<kebab-name>` in its envelope;
 * in-process callers read `status` and `klass`.
 */
export class ComputeError extends ApiError {
  constructor(status: number, klass: string, message: string) {
    super(status, message, klass);
  }
  get klass(): string {
    return this.kind ?? 'Invalid';
  }
}

export const computeError = (status: number, klass: string, message: string) =>
  new ComputeError(status, klass, message);
