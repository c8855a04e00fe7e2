/**
 * One error type for every service; each service's error renderer turns it into that service's envelope
 * (Keystone `{"error":…}`, Zun `{"errors":[…]}`, Neutron `{"NeutronError":…}`, …).
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** Service-specific error class: Zun's exception name, Neutron's `type`. */
    readonly kind?: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export const badRequest = (msg: string, kind?: string) => new ApiError(400, msg, kind);
export const unauthorized = (msg = 'The request you have made requires authentication.') =>
  new ApiError(401, msg, 'Unauthorized');
export const forbidden = (msg = 'You are not authorized to perform the requested action.', kind?: string) =>
  new ApiError(403, msg, kind ?? 'Forbidden');
export const notFound = (msg: string, kind?: string) => new ApiError(404, msg, kind);
export const conflict = (msg: string, kind?: string) => new ApiError(409, msg, kind);

export const STATUS_TITLES: Record<number, string> = {
  300: 'Multiple Choices',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Request Entity Too Large',
  414: 'Request-URI Too Long',
  415: 'Unsupported Media Type',
  416: 'Requested Range Not Satisfiable',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
};

export interface NormalizedError {
  status: number;
  message: string;
  kind?: string;
  headers: Record<string, string>;
  /** True when the cause was a bug rather than bad input: logged with a stack, shown generically. */
  internal: boolean;
}

/** Maps anything thrown in a handler (ours, Fastify's validation and parser errors, bugs) to status + message. */
export function normalizeError(err: unknown): NormalizedError {
  if (err instanceof ApiError)
    return { status: err.status, message: err.message, kind: err.kind, headers: err.headers, internal: false };
  const e = err as {
    statusCode?: number;
    validation?: Array<{ instancePath?: string; message?: string; params?: Record<string, unknown> }>;
    validationContext?: string;
    code?: string;
    message?: string;
  };
  if (e?.validation) {
    const first = e.validation[0];
    const field =
      (first?.instancePath ?? '').replace(/^\//, '').replace(/\//g, '.') ||
      (first?.params?.missingProperty as string | undefined) ||
      (first?.params?.additionalProperty as string | undefined) ||
      e.validationContext ||
      'body';
    let detail = first?.message ?? 'is invalid';
    if (first?.params?.additionalProperty)
      detail = `Additional properties are not allowed ('${first.params.additionalProperty}' was unexpected)`;
    return {
      status: 400,
      message: `Invalid input for field '${field}': ${detail}`,
      kind: 'ValidationError',
      headers: {},
      internal: false,
    };
  }
  if (e?.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
    let message = e.message ?? 'Bad request';
    if (
      e.code === 'FST_ERR_CTP_INVALID_JSON_BODY' ||
      e.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' ||
      (e.statusCode === 400 && /JSON/.test(message))
    )
      message = 'Malformed request body: the body is not valid JSON.';
    if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE') message = 'Request body is too large.';
    if (e.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') message = 'Unsupported Content-Type.';
    return { status: e.statusCode, message, headers: {}, internal: false };
  }
  return {
    status: 500,
    message: 'An unexpected error prevented the server from fulfilling your request.',
    headers: {},
    internal: true,
  };
}
