import { compare, hash } from '@node-rs/bcrypt';

/** Keystone's default is bcrypt with cost 12; Krater hashes at the same strength. */
export const BCRYPT_COST = 12;

export function hashPassword(password: string): Promise<string> {
  return hash(password, { cost: BCRYPT_COST });
}

export async function verifyPassword(password: string, stored: string | null): Promise<boolean> {
  if (!stored) return false;
  try {
    return await compare(password, stored);
  } catch {
    return false;
  }
}
