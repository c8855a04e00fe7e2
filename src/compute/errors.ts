import { ApiError } from '../core/http/errors.js';

/**
 * An error of the container domain, named by Zun's exception class (`NotFound`, `Conflict`, `ResourcesUnavailable`,
 * …); the Zun facade renders it as `container.<kebab-name>` in its envelope, other callers read status and class.
 */
export const computeError = (status: number, klass: string, message: string) => new ApiError(status, message, klass);
