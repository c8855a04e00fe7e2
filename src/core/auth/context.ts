/**
 * The request context every protected route sees: what keystonemiddleware would put in the request headers,
 * produced in-process from the token.
 */
export interface AuthContext {
  token: string;
  userId: string;
  userName: string;
  userDomainId: string;
  userDomainName: string;
  projectId?: string;
  projectName?: string;
  projectDomainId?: string;
  projectDomainName?: string;
  domainId?: string;
  domainName?: string;
  /** 'all' for system-scoped tokens. */
  systemScope?: string;
  roles: string[];
  roleIds: string[];
  /** The `context_is_admin` rule (role:admin) holds. */
  isAdmin: boolean;
  appCredentialId?: string;
  methods: string[];
  auditIds: string[];
  issuedAt: number;
  expiresAt: number;
}

export interface TokenValidator {
  /** Validates a caller's token; throws a 401 ApiError when it is missing, invalid, expired or revoked. */
  validateForRequest(token: string): Promise<AuthContext>;
}

/** The flattened credentials the policy engine checks (oslo.context's `to_policy_values`). */
export function policyCredentials(ctx: AuthContext) {
  return {
    user_id: ctx.userId,
    user_domain_id: ctx.userDomainId,
    project_id: ctx.projectId ?? null,
    project_domain_id: ctx.projectDomainId ?? null,
    domain_id: ctx.domainId ?? null,
    system_scope: ctx.systemScope ?? null,
    roles: ctx.roles,
    is_admin: ctx.isAdmin,
  };
}
