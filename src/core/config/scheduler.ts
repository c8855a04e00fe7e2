/**
 * The scheduler's knobs:
 *
 * - KRATER_SCHEDULER_WEIGHER (`spread`): how a host is chosen among those that pass the filters and have room —
 *   `spread` (the most free RAM, then CPU, wins: Zun's RAMWeigher with a positive multiplier) or `pack` (the least
 *   free RAM, then CPU: fill one host before the next).
 */
import { choice, type Env } from './values.js';

export const WEIGHERS = ['spread', 'pack'] as const;
export type WeigherName = (typeof WEIGHERS)[number];

export interface SchedulerSettings {
  weigher: WeigherName;
}

export function schedulerSettings(env: Env): SchedulerSettings {
  return { weigher: choice(env, 'KRATER_SCHEDULER_WEIGHER', [...WEIGHERS] as [WeigherName, ...WeigherName[]]) };
}
